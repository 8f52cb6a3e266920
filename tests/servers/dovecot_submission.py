#!/usr/bin/python3
"""A private dovecot submission server (SCRAM-SHA-256, SCRAM-SHA-1) for the emailsession tests.

Writes tests/servers/dovecot/dovecot.conf.in, filled in, to a temporary folder, starts
`dovecot -F` on it, prints "PORT <n>" once the submission port accepts connections, and relays
every accepted message to --relay-port (the test's own smtpd.py). Stays up until SIGTERM/SIGINT
or until its stdin (a pipe, socket or tty) reaches EOF; then stops dovecot and removes the
folder. Accounts: tests/servers/dovecot/passwd (every password is "pencil").
"""

import argparse
import ctypes
import grp
import os
import pwd
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DOVECOT = os.environ.get("DOVECOT", "/usr/sbin/dovecot")


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def users():
    """(internal, login, mail) users: dovecot's own under root, which its processes refuse to
    run as; else ourselves for all three."""
    if os.getuid() == 0:
        return "dovecot", "dovenull", "dovecot"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, me, me


def write_config(folder, port, relay_port):
    internal, login, mail = users()
    values = {
        "@DIR@": folder,
        "@PORT@": str(port),
        "@RELAY_PORT@": str(relay_port),
        "@INTERNAL_USER@": internal,
        "@LOGIN_USER@": login,
        "@MAIL_USER@": mail,
        "@MAIL_GROUP@": grp.getgrgid(pwd.getpwnam(mail).pw_gid).gr_name,
        # a copy under the folder: the tree may sit where dovecot's unprivileged auth process
        # cannot read (a scratch copy in a 0700 temporary directory, as tools/check-asan.sh makes)
        "@PASSWD@": os.path.join(folder, "passwd"),
    }
    with open(os.path.join(HERE, "dovecot", "dovecot.conf.in"), encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(key, value)
    path = os.path.join(folder, "dovecot.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    shutil.copyfile(os.path.join(HERE, "dovecot", "passwd"), os.path.join(folder, "passwd"))
    os.chmod(os.path.join(folder, "passwd"), 0o644)
    for sub in ("run", "state", "home"):
        os.mkdir(os.path.join(folder, sub))
    return path


def die_with_parent():
    """In dovecot's process: SIGTERM when we die, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def wait_listening(port, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stdin_watchable():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


def wait_for_end(proc):
    """Until SIGTERM/SIGINT, EOF on stdin, or dovecot's own end."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    if stdin_watchable():
        sel.register(0, selectors.EVENT_READ)
    while not stop and proc.poll() is None:
        for key, _ in sel.select(timeout=0.2):
            if not os.read(key.fd, 4096):
                return


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--relay-port", type=int, required=True,
                   help="where dovecot relays the messages (SMTP on 127.0.0.1)")
    args = p.parse_args(argv)
    port = args.port or free_port("127.0.0.1")
    folder = tempfile.mkdtemp(prefix="emailsession-dovecot-")
    os.chmod(folder, 0o755)  # dovecot's unprivileged processes read under it
    proc = None
    try:
        config = write_config(folder, port, args.relay_port)
        proc = subprocess.Popen([DOVECOT, "-F", "-c", config], stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
        if not wait_listening(port, proc, 10):
            log = os.path.join(folder, "dovecot.log")
            if os.path.exists(log):
                sys.stderr.write(open(log, encoding="utf-8", errors="replace").read())
            print("dovecot_submission.py: dovecot did not start", file=sys.stderr)
            return 1
        print(f"PORT {port}", flush=True)
        wait_for_end(proc)
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.environ.get("EMAIL_TEST_KEEP"):
            print(f"dovecot_submission.py: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
