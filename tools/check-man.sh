#!/bin/sh
# The manual pages against the code (make check and CI run it):
#  - every page of man/ is clean under `mandoc -Tlint -Wwarning`;
#  - every function declared EMAIL_EXTERN in include/*.h has a page under its own name in
#    man/man3 (its page or a one-line `.so man3/PAGE.3` link), installed by Makefile.am, whose
#    NAME lists it and whose SYNOPSIS gives its prototype exactly as the header does;
#  - every code block of an EXAMPLES section (`.Bd -literal` alone on its line; a block that shows
#    something else, such as a log, is `.Bd -literal -offset indent`) compiles with -Wall -Wextra
#    -Werror: a whole program (it has a main) is linked against the library built here, any
#    other block is compiled as a function body.
# Run from anywhere: tools/check-man.sh (after make, for the examples).
set -eu
top_srcdir=${EMAIL_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${EMAIL_TEST_BUILDDIR:-$top_srcdir}
man=$top_srcdir/man
work=$(mktemp -d "${TMPDIR:-/tmp}/check-man.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "check-man: $*"; failed=1; }

# ---- mandoc -Tlint ------------------------------------------------------------------------
if command -v mandoc >/dev/null 2>&1; then
    # from man/ so that the `.so man3/...` links resolve as they do once installed
    for page in $(cd "$man" && ls man*/*.[1-9] *.[1-9] 2>/dev/null); do
        # a link page is one `.so` line (mandoc calls .so fragile): its target is linted itself
        if grep -q '^\.so ' "$man/$page"; then
            [ "$(wc -l <"$man/$page")" -eq 1 ] && [ -f "$man/$(sed 's/^\.so //' "$man/$page")" ] ||
                fail "$page: a link page is the one line '.so man3/PAGE.3' naming an existing page"
            continue
        fi
        out=$(cd "$man" && mandoc -Tlint -Wwarning "$page" 2>&1) || fail "mandoc -Tlint: $out"
    done
else
    fail "mandoc is not installed (tools/setup.sh installs it): the pages were not linted"
fi

# ---- the prototypes of the headers, one a line: "type name(args)" ---------------------------
# Comments go, then each declaration is one line; the segments that only mention EMAIL_EXTERN
# (its #define) do not look like a prototype and are dropped.
normalise() {
    sed -e 's/[[:space:]][[:space:]]*/ /g' -e 's/^ //' -e 's/ $//' -e 's/( /(/g' -e 's/ )/)/g' \
        -e 's/ ,/,/g'
}
tr '\n' ' ' <"$top_srcdir/include/emailsession.h" >"$work/headers"
tr '\n' ' ' <"$top_srcdir/include/emailsession-uv.h" >>"$work/headers"
sed -e 's:/\*\([^*]\|\*\**[^*/]\)*\*\**/: :g' "$work/headers" | tr ';' '\n' |
    sed -n 's/.*EMAIL_EXTERN //p' | normalise |
    grep '^[A-Za-z0-9_ *]*email_[a-z0-9_]*(' >"$work/protos" || true
[ -s "$work/protos" ] || fail "no EMAIL_EXTERN prototype found in include/*.h"

# The prototypes a page's SYNOPSIS gives with .Ft / .Fo / .Fa / .Fc, in the same form.
page_protos() {
    awk '
        /^\.Sh / { syn = ($2 == "SYNOPSIS") }
        !syn { next }
        { line = $0; sub(/^\.[A-Za-z]+ /, "", line); gsub(/"/, "", line) }
        /^\.Ft / { type = line }
        /^\.Fo / { name = line; nargs = 0; args = "" }
        /^\.Fa / { args = args (nargs++ ? ", " : "") line }
        /^\.Fc/ && name != "" {
            printf "%s%s%s(%s)\n", type, (type ~ /\*$/ ? "" : " "), name, args
            name = ""
        }' "$1" | normalise
}

# ---- a page name for every function --------------------------------------------------------
while read -r proto; do
    fn=$(echo "$proto" | sed 's/^[A-Za-z0-9_ *]*[ *]\(email_[a-z0-9_]*\)(.*/\1/')
    page=$man/man3/$fn.3
    if [ ! -f "$page" ]; then
        fail "$fn has no man page: add man/man3/$fn.3 (a page, or the line '.so man3/PAGE.3'"\
"), and list it in dist_man3_MANS of Makefile.am"
        continue
    fi
    grep -q "^man/man3/$fn\.3\b\|[[:space:]]man/man3/$fn\.3\b" "$top_srcdir/Makefile.am" ||
        fail "man/man3/$fn.3 is not in dist_man3_MANS of Makefile.am (it would not be installed)"
    target=$(sed -n '1s/^\.so man3\/\([^ ]*\)$/\1/p' "$page")
    if [ -n "$target" ]; then
        page=$man/man3/$target
        [ -f "$page" ] || { fail "man/man3/$fn.3 links to $target, which is missing"; continue; }
    fi
    grep -q "^\.Nm $fn\( ,\)\{0,1\}$" "$page" ||
        fail "$fn: its page $(basename "$page") does not list it in NAME (.Nm $fn)"
    page_protos "$page" | grep -qxF "$proto" ||
        fail "$fn: the SYNOPSIS of $(basename "$page") does not give the header's prototype:
    $proto
  (write it with .Ft, .Fo, one .Fa per argument, .Fc)"
done <"$work/protos"

# ---- EXAMPLES compile ----------------------------------------------------------------------
# The literal blocks of each EXAMPLES section, unescaped (\e \& \(aq \- are roff's), one file each.
extract_examples() {
    awk -v dir="$work" -v base="$2" '
        /^\.Sh / { ex = ($2 == "EXAMPLES"); next }
        ex && /^\.Bd -literal$/ { n++; file = sprintf("%s/%s-%d.c", dir, base, n); inblock = 1; next }
        inblock && /^\.Ed/ { inblock = 0; close(file); next }
        inblock {
            line = $0
            gsub(/\\&/, "", line); gsub(/\\\(aq/, "\047", line); gsub(/\\-/, "-", line)
            gsub(/\\e/, "\\", line)
            print line > file
        }' "$1"
}
for page in "$man"/man*/*.[1-9]; do
    extract_examples "$page" "$(basename "$page" | tr . -)"
done
# with the sanitizer flags the library was built with (./configure --enable-sanitizers)
cflags="${SAN_CFLAGS:-} -Wall -Wextra -Werror -I$builddir/include -I$top_srcdir/include \
$(pkg-config --cflags libuv 2>/dev/null || true)"
uvlibs=$(pkg-config --libs libuv 2>/dev/null || true)
for c in "$work"/*.c; do
    [ -f "$c" ] || continue
    name=$(basename "$c" .c)
    if grep -q '^int main(' "$c"; then
        # shellcheck disable=SC2086
        if ! out=$(cd "$work" && "$builddir/libtool" --mode=link ${CC:-cc} $cflags -o "$name" \
                   "$c" "$builddir/libemailsession.la" $uvlibs 2>&1); then
            fail "the example $name does not build:"; echo "$out"; cat -n "$c"
        fi
    else
        { echo '#include <emailsession.h>'; echo '#include <stdio.h>'; echo '#include <stdlib.h>'
          echo "void example(void);"; echo "void example(void)"; echo "{"; cat "$c"; echo "}"
        } >"$work/$name-body.c"
        # shellcheck disable=SC2086
        out=$(${CC:-cc} $cflags -c -o "$work/$name.o" "$work/$name-body.c" 2>&1) ||
            { fail "the example $name does not compile:"; echo "$out"; cat -n "$work/$name-body.c"; }
    fi
done

[ "$failed" -eq 0 ] || exit 1
echo "check-man: $(ls "$man"/man*/*.[1-9] | wc -l) pages lint clean, $(wc -l <"$work/protos")" \
    "functions have their page, $(ls "$work"/*.c 2>/dev/null | grep -vc -- '-body\.c$') examples build"
