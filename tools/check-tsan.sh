#!/bin/sh
# Thread-safety: builds a ThreadSanitizer copy of the library (clang) in a scratch clone of this
# checkout and runs the tests that call the library from several threads at once (test_threads'
# stress test first: shared names started, used and closed from several threads while another
# changes the log, the log callback, the timeout and the CA file). Any data race report fails
# the run.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$src" ls-files -z | (cd "$src" && xargs -0 tar cf -) | (cd "$work" && tar xf -)
cd "$work"
./autogen.sh >/dev/null 2>&1
CC=clang CFLAGS="-g -O1 -fsanitize=thread" LDFLAGS="-fsanitize=thread" \
    ./configure -q --disable-werror >/dev/null
tests="tests/integration/test_threads tests/integration/test_sessions tests/integration/test_async
    tests/integration/test_pop3_async tests/integration/test_imap_async"
# shellcheck disable=SC2086
make -s -j2 $tests >/dev/null
export EMAIL_TEST_SERVERS="$work/tests/servers"
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$work/tests/tsan.supp"
for t in $tests; do
    echo "check-tsan: $t"
    ./$t > "$work/out.log" 2>&1 || { tail -80 "$work/out.log"; exit 1; }
    if grep -q "WARNING: ThreadSanitizer" "$work/out.log"; then
        grep -A 40 "WARNING: ThreadSanitizer" "$work/out.log" | head -80
        exit 1
    fi
    tail -1 "$work/out.log"
done
echo "check-tsan: no data race"
