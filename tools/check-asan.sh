#!/bin/sh
# AddressSanitizer + UndefinedBehaviorSanitizer: builds a copy of this checkout with
# ./configure --enable-sanitizers (clang) in a scratch directory and runs `make check` there.
# Any ASan/UBSan report (UBSan does not recover) or leak fails the run.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$src" ls-files -z | (cd "$src" && xargs -0 tar cf -) | (cd "$work" && tar xf -)
cd "$work"
./autogen.sh >/dev/null 2>&1
CC=${CC:-clang} ./configure -q --enable-sanitizers >/dev/null
make -s -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if ! make -s -j"$(nproc 2>/dev/null || echo 2)" check >"$work/check.out" 2>&1; then
    tail -40 "$work/check.out"
    for f in tests/*/*.log tests/*.log; do
        [ -f "$f" ] || continue
        grep -q "^FAIL\|^ERROR\|Sanitizer\|runtime error" "$f" || continue
        echo "== $f"; tail -80 "$f"
    done
    exit 1
fi
sed -n 's/^# \(TOTAL\|PASS\|SKIP\|FAIL\|ERROR\): */check-asan: \1 /p' test-suite.log
