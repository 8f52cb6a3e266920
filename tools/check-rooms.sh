#!/bin/sh
# The house's rules (issue #14): no lib/*.c over 800 lines, no function over 70 lines (from the
# '{' at column 0 that follows its signature to the '}' at column 0 that closes it), and no
# circle of #includes between lib modules (a module: x.c, x.h and their x_*.c / x_internal.h
# parts). Prints each breach; exits 1 when there is one.
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
${PYTHON3:-python3} - <<'PY' || status=1
import glob, os, re, sys
PARTS = r"_(internal|setup|txn|queue|request|sync|file)$"
def module(name):
    return re.sub(PARTS, "", re.sub(r"\.(c|h)$", "", os.path.basename(name)))
uses = {}
for f in glob.glob("lib/*.[ch]"):
    for line in open(f, encoding="utf-8", errors="replace"):
        m = re.match(r'#include "([^"]+)"', line)
        if m and os.path.exists("lib/" + m.group(1)) and module(m.group(1)) != module(f):
            uses.setdefault(module(f), set()).add(module(m.group(1)))
def circle(start, node, path):
    for n in sorted(uses.get(node, ())):
        if n == start:
            return path
        if n not in path:
            found = circle(start, n, path + [n])
            if found:
                return found
    return None
bad = False
for m in sorted(uses):
    c = circle(m, m, [m])
    if c and min(c) == m:
        print("check-rooms: a circle of includes: " + " -> ".join(c + [m]))
        bad = True
sys.exit(1 if bad else 0)
PY
[ "$status" -eq 0 ] && echo "check-rooms: every lib/*.c within 800 lines, every function within 70, no circle"
exit "$status"
