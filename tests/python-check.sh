#!/bin/sh
# The Python package (bindings/python): its pytest suite against the library just built and the
# project's aiosmtpd server, then the package as `make install` lays it out (a staged install),
# imported and run. Skipped (exit 77) in a sanitizer build (the interpreter would need the ASan
# runtime preloaded), under `make check-valgrind` (the same run again, valgrind watches only the C
# test programs), and when $PYTHON3 lacks pytest or aiosmtpd (python3-pytest, python3-aiosmtpd).
set -eu
srcdir=${EMAIL_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${EMAIL_TEST_BUILDDIR:-$srcdir}
py=${PYTHON3:-/usr/bin/python3}
skip() { echo "python-check: $*: skipped"; exit 77; }
[ -z "${SAN_CFLAGS:-}" ] || skip "sanitizer build"
[ -z "${EMAIL_UNDER_VALGRIND:-}" ] || skip "run by make check, not again under valgrind"
"$py" -c 'import pytest, aiosmtpd' 2>/dev/null || skip "$py has no pytest or aiosmtpd"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# no __pycache__ or .pytest_cache in the source tree (read-only under distcheck)
export PYTHONDONTWRITEBYTECODE=1
soname=${EMAIL_TEST_SONAME:-libemailsession.so.1}  # configure's, from libtool's version-info
export EMAILSESSION_LIBRARY="$builddir/.libs/$soname"
PYTHONPATH="$srcdir/bindings/python" "$py" -m pytest -q -p no:cacheprovider \
    --basetemp="$stage/pytest" "$srcdir/bindings/python/tests"

# Installed: every module listed in Makefile.am (the import and a message built) and _paths.py
# naming the configured libdir.
make -s -C "$builddir" install DESTDIR="$stage/root" >"$stage/install.log" 2>&1 ||
    { cat "$stage/install.log"; exit 1; }
site="$stage/root${EMAIL_TEST_PYTHONDIR:?}"
EMAILSESSION_LIBRARY="$stage/root${EMAIL_TEST_LIBDIR:?}/$soname" PYTHONPATH="$site" \
    "$py" -c '
import sys, emailsession, emailsession._paths as paths
assert emailsession.__file__.startswith(sys.argv[1]), emailsession.__file__
assert paths.LIBDIR == sys.argv[2], paths.LIBDIR
emailsession.Message(sender="a@example.org", to="b@example.org", subject="s").to_mime()
' "$site" "$EMAIL_TEST_LIBDIR"
[ -f "$site/emailsession/py.typed" ]
EMAILSESSION_LIBRARY="$stage/root$EMAIL_TEST_LIBDIR/$soname" PYTHONPATH="$site" \
    "$py" -m emailsession --version
echo "python-check: OK"
