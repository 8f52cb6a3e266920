#!/bin/sh
# The ABI check (issue #11): compares the built shared library with the baseline under abi/
# (abidw's description of the released interface) and fails on anything but additions: a
# removed or changed function or variable, a public type whose size or layout changed (growth
# through the reserved_ slots of email_server_t / email_status_t is allowed: abi/suppressions).
#   tools/abi-check.sh [BUILDDIR]            check (make abi-check)
#   tools/abi-check.sh --update [BUILDDIR]   write the baseline anew (make abi-dump): only when a
#                                            new soname is released
# Needs abigail-tools and a library built with debug information (the default -g).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
update=no
[ "${1:-}" = --update ] && { update=yes; shift; }
builddir=${1:-$top}
soname=libemailsession.so.1
lib="$builddir/.libs/$soname"
baseline="$top/abi/$soname.abi"
[ -f "$lib" ] || { echo "abi-check: $lib is not built"; exit 1; }
command -v abidiff >/dev/null || { echo "abi-check: abidiff missing (apt-get install abigail-tools)"; exit 1; }

if [ "$update" = yes ]; then
    abidw --no-corpus-path --headers-dir "$top/include" --out-file "$baseline" "$lib"
    echo "abi-check: baseline written to abi/$soname.abi"
    exit 0
fi
[ -f "$baseline" ] || { echo "abi-check: no baseline abi/$soname.abi"; exit 1; }
report=$(abidiff --suppressions "$top/abi/suppressions" --headers-dir2 "$top/include" \
         "$baseline" "$lib") && rc=0 || rc=$?
# abidiff: bit 1 error, 2 usage, 4 some change, 8 an incompatible change
if [ $((rc & 11)) -ne 0 ]; then
    echo "$report"
    echo "abi-check: abidiff failed or found an incompatible change (status $rc)"
    exit 1
fi
bad=$(echo "$report" | sed -n 's/^\(Functions\|Variables\) changes summary: \([0-9]*\) Removed, \([0-9]*\) Changed.*/\2 \3/p' |
      awk '$1 + $2 > 0')
if [ -n "$bad" ]; then
    echo "$report"
    echo "abi-check: the interface of $soname changed (only additions are compatible)"
    exit 1
fi
added=$(echo "$report" | grep -c "^  \[A\]" || true)
echo "abi-check: $soname compatible with its baseline ($added function(s) added)"
