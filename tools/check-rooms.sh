#!/bin/sh
# The house's size rules (issue #14): no lib/*.c over 800 lines, no function over 70 lines. A
# function runs from the '{' at column 0 that follows its signature to the '}' at column 0 that
# closes it. Prints each breach; exits 1 when there is one.
cd "${1:-$(dirname "$0")/..}" || exit 2
status=0
for f in lib/*.c; do
    n=$(wc -l < "$f")
    if [ "$n" -gt 800 ]; then
        echo "check-rooms: $f has $n lines (800 at most)"
        status=1
    fi
    awk -v f="$f" '
        /^[A-Za-z_].*\)[ ]*$/ { sigline = NR; sig = $0 }
        /^\{/ { if (sigline == NR - 1) { start = NR; name = sig } }
        /^\}/ {
            if (start && NR - start + 1 > 70) {
                printf "check-rooms: %s:%d: %d lines (70 at most): %s\n", f, start, NR - start + 1, name
                bad = 1
            }
            start = 0
        }
        END { exit bad }
    ' "$f" || status=1
done
[ "$status" -eq 0 ] && echo "check-rooms: every lib/*.c within 800 lines, every function within 70"
exit "$status"
