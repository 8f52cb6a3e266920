#!/bin/sh
# The namespace (issue #11): every global symbol of the static library starts with email_; those
# that are not email__ (internal) are exactly the functions the installed headers declare
# EMAIL_EXTERN; the shared library exports exactly those, each in the version node of
# lib/emailsession.map.
set -eu
top_srcdir=${EMAIL_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${EMAIL_TEST_BUILDDIR:-$top_srcdir}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

sed -n 's/^EMAIL_EXTERN[^(]*[ *]\(email_[a-z0-9_]*\)(.*/\1/p' "$top_srcdir"/include/*.h |
    sort -u > "$tmp/declared"
[ -s "$tmp/declared" ] || { echo "symbols-check: no EMAIL_EXTERN declaration found"; exit 1; }

nm -g --defined-only "$builddir/.libs/libemailsession.a" | awk 'NF == 3 {print $3}' | sort -u \
    > "$tmp/static"
outside=$(grep -v '^email_' "$tmp/static" || true)
if [ -n "$outside" ]; then
    echo "symbols-check: globals outside the email_ namespace (make them static or email__):"
    echo "$outside" | sed 's/^/    /'
    status=1
fi
grep '^email_' "$tmp/static" | grep -v '^email__' > "$tmp/public" || true
if ! cmp -s "$tmp/declared" "$tmp/public"; then
    echo "symbols-check: email_ globals differ from the EMAIL_EXTERN declarations" \
         "(< declared only, > defined only; an internal one must be email__):"
    diff "$tmp/declared" "$tmp/public" | grep '^[<>]' | sed 's/^/    /'
    status=1
fi

so="$builddir/.libs/libemailsession.so"
if [ -f "$so" ]; then
    nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -v '^EMAILSESSION_' |
        sed 's/@.*//' | sort -u > "$tmp/exported"
    if ! cmp -s "$tmp/declared" "$tmp/exported"; then
        echo "symbols-check: the shared library's exports differ from the declarations:"
        diff "$tmp/declared" "$tmp/exported" | grep '^[<>]' | sed 's/^/    /'
        status=1
    fi
    if objdump -T "$so" | grep -q 'EMAILSESSION_'; then
        unversioned=$(objdump -T "$so" | awk '/ email_/ && $0 !~ /EMAILSESSION_[0-9]/ {print $NF}')
        if [ -n "$unversioned" ]; then
            echo "symbols-check: exported without a version node:" $unversioned
            status=1
        fi
    else
        echo "symbols-check: note: the linker took no version script (no EMAILSESSION_ node)"
    fi
fi
[ "$status" -eq 0 ] && echo "symbols-check: $(wc -l < "$tmp/declared") public functions, no other global"
exit "$status"
