#!/bin/sh
# The GTK example under Xvfb: a 20 MB attachment goes out over a slow link (a throttling proxy
# in front of smtp-sink) while the window keeps painting frames. Skipped (exit 77) when the
# example was not built (no GTK 4) or Xvfb is missing.
set -eu
srcdir=${EMAIL_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${EMAIL_TEST_BUILDDIR:-$srcdir}
demo="$builddir/examples/gtk-send"
[ -x "$demo" ] || { echo "gui-check: examples/gtk-send not built (no GTK 4): skipped"; exit 77; }
command -v xvfb-run >/dev/null || { echo "gui-check: xvfb-run missing: skipped"; exit 77; }

work=$(mktemp -d)
cleanup() {
    [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
    [ -n "${sink_pid:-}" ] && kill "$sink_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

sink_port=$(${PYTHON3:-/usr/bin/python3} -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""
[ "$(id -u)" -eq 0 ] && user="-u root"
${SMTP_SINK:-/usr/sbin/smtp-sink} $user 127.0.0.1:"$sink_port" 100 &
sink_pid=$!
mkfifo "$work/keep"
${PYTHON3:-/usr/bin/python3} "$srcdir/tests/servers/slowproxy.py" --to "$sink_port" \
    --rate 8000000 < "$work/keep" > "$work/proxy.port" &
proxy_pid=$!
exec 3>"$work/keep"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -s "$work/proxy.port" ] && break
    sleep 0.3
done
proxy_port=$(awk '{print $2}' "$work/proxy.port")
head -c 20000000 /dev/urandom > "$work/big.bin"

# In a sanitizer build, GTK and fontconfig keep caches for the life of the process that
# LeakSanitizer reports; the library's own leaks are checked by every other test.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
xvfb-run -a "$demo" 127.0.0.1 "$proxy_port" me@example.org you@example.org "$work/big.bin" \
    --auto > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
cat "$work/out.txt"
# the session starts without waiting: "Connecting..." first, then "Connected", then the outcome
grep -q '^Connecting\.\.\.$' "$work/out.txt"
grep -q '^Connected: 2[0-9][0-9] ' "$work/out.txt"
grep -q '^Sent in' "$work/out.txt"
frames=$(sed -n 's/^frames painted while sending: \([0-9]*\).*/\1/p' "$work/out.txt")
# a window frozen by the send would paint a frame or two; a live one paints on every tick
[ "${frames:-0}" -ge 30 ] || { echo "gui-check: only ${frames:-0} frames painted while sending"; exit 1; }

# a server that is not there: the window says so (the start's refusal), the message fails
dead_port=$(${PYTHON3:-/usr/bin/python3} -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if xvfb-run -a "$demo" 127.0.0.1 "$dead_port" me@example.org you@example.org "$work/big.bin" \
    --auto > "$work/dead.txt" 2>&1; then
    cat "$work/dead.txt"; echo "gui-check: sent to a closed port?"; exit 1
fi
cat "$work/dead.txt"
grep -q '^Connecting\.\.\.$' "$work/dead.txt"
grep -q '^Not connected (EMAIL_ECONNECT): ' "$work/dead.txt"
grep -q '^Not sent (EMAIL_ECONNECT): ' "$work/dead.txt"
echo "gui-check: OK"
