#!/bin/sh
# The Debian packages (issue #11), as a distribution builds them: from the release tarball
# (make dist), with dpkg-buildpackage -us -uc -b; lintian must report no error; then the packages
# are installed on this machine, a program is compiled against them with pkg-config alone and
# sends through a local server (tools/demo.py), and they are removed again.
#   tools/build-debs.sh [BUILDDIR]     BUILDDIR: a configured tree (default: the source tree)
# Leaves the .deb files in BUILDDIR/debs/. Installs what it needs with apt-get (root or sudo).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(cd "${1:-$top}" && pwd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need="dpkg-dev debhelper dh-python lintian fakeroot"
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing

version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
make -s -C "$builddir" dist-gzip >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$builddir/emailsession-$version.tar.gz" -C "$work"
cd "$work/emailsession-$version"
echo "build-debs: dpkg-buildpackage (tests are run by make check, not again here)"
DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b -Pnocheck \
    >"$work/build.log" 2>&1 || { tail -60 "$work/build.log"; exit 1; }
grep -E '^dpkg-gensymbols: warning' -A20 "$work/build.log" || true
cd "$work"
lintian --fail-on error --tag-display-limit 0 ./*.changes | tee "$work/lintian.log"
echo "build-debs: lintian: $(grep -c '^E:' "$work/lintian.log" || true) error(s)," \
     "$(grep -c '^W:' "$work/lintian.log" || true) warning(s)"

mkdir -p "$builddir/debs"
cp ./*.deb "$builddir/debs/"
pkgs=$(for d in ./*.deb; do dpkg-deb -f "$d" Package; done)
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q ./*.deb >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; exit 1; }
cleanup() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get purge -y -q $pkgs >/dev/null 2>&1 || true; }
trap 'cleanup; rm -rf "$work"' EXIT
# a program built against the installed packages only
cc -o "$work/send-demo" "$top/examples/send-demo.c" $(pkg-config --cflags --libs emailsession)
ldd "$work/send-demo" | grep -q '=> /\(usr/\)\?lib/.*libemailsession.so.1' ||
    { ldd "$work/send-demo"; echo "build-debs: the demo is not linked to the packaged library"; exit 1; }
/usr/bin/python3 "$top/tools/demo.py" "$work/send-demo" >"$work/demo.log" 2>&1 ||
    { cat "$work/demo.log"; exit 1; }
grep -q '^sent: the server accepted the message' "$work/demo.log"
# the packaged command-line sender, through a local server
if command -v emailsession-send >/dev/null; then
    mkdir "$work/spool"
    /usr/bin/python3 "$top/tests/servers/smtpd.py" --host 127.0.0.1 --port 0 \
        --spool "$work/spool" >"$work/port" &
    server=$!
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$work/port" ] && break; sleep 0.5; done
    port=$(sed -n 's/^PORT //p' "$work/port")
    echo "packaged" | emailsession-send --server 127.0.0.1 --port "$port" --security none \
        --from a@example.org --to b@example.org --subject "from the package" ||
        { kill "$server"; echo "build-debs: emailsession-send failed"; exit 1; }
    kill "$server"
    grep -q '^Subject: from the package' "$work"/spool/*.eml
    man -w emailsession-send >/dev/null
fi
# the packaged Python module finds the packaged library by its soname
(cd "$work" && env -u EMAILSESSION_LIBRARY /usr/bin/python3 -m emailsession --version) ||
    { echo "build-debs: the Python package does not load"; exit 1; }
echo "build-debs: OK: $(echo $pkgs) built, lintian clean of errors, installed, a program" \
     "compiled with pkg-config sent through them"
