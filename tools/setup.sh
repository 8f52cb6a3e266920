#!/bin/sh
# Installs the Debian packages that building and testing emailsession need (when missing),
# then builds: ./autogen.sh && ./configure && make.
#   tools/setup.sh && make demo     the demo: a send to a local server, with its conversation log
#   tools/setup.sh && make -j2 check    every test
set -e
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config libuv1-dev libgnutls28-dev
libidn2-dev libcmocka-dev gnutls-bin python3 python3-aiosmtpd python3-pytest postfix
dovecot-core dovecot-submissiond dovecot-pop3d dovecot-imapd valgrind clang libcurl4-gnutls-dev libgtk-4-dev xvfb xauth
abigail-tools mandoc libgmime-3.0-dev"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # postfix asks questions when installed interactively; we only need its smtp-sink tool
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure
make -j"$(nproc 2>/dev/null || echo 2)"
