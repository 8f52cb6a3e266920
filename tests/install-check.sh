#!/bin/sh
# After `make install`, a program built with `pkg-config --cflags --libs emailsession` starts a
# named session with AUTH against aiosmtpd and sends (the demo program, compiled out of tree).
set -eu
top_srcdir=${EMAIL_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${EMAIL_TEST_BUILDDIR:-$top_srcdir}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

make -s -C "$builddir" install DESTDIR="$stage" >"$stage/install.log" 2>&1 ||
    { cat "$stage/install.log"; exit 1; }
prefix=$(sed -n 's/^prefix=//p' "$builddir/emailsession.pc")
export PKG_CONFIG_PATH="$stage$prefix/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$stage"
pkg-config --exists emailsession
# with the compiler and sanitizer flags the library was built with (./configure --enable-sanitizers)
${CC:-cc} ${SAN_CFLAGS:-} -o "$stage/send-demo" "$top_srcdir/examples/send-demo.c" \
    $(pkg-config --cflags emailsession) $(pkg-config --libs emailsession)
LD_LIBRARY_PATH="$stage$prefix/lib" ${PYTHON3:-/usr/bin/python3} "$top_srcdir/tools/demo.py" \
    "$stage/send-demo" > "$stage/out.txt" 2>&1 || { cat "$stage/out.txt"; exit 1; }
grep -q 'AUTH PLAIN \*\*\*\*' "$stage/out.txt"
grep -q '^sent: the server accepted the message' "$stage/out.txt"
grep -q '^Subject: =?UTF-8?' "$stage/out.txt"
echo "install-check: OK"
