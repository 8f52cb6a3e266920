#!/usr/bin/python3
"""A private dovecot POP3 and IMAP server for the emailsession tests.

Writes tests/servers/dovecot/mail.conf.in, filled in, to a temporary folder, seeds the maildirs
with the fixture messages given, starts `dovecot -F` on it and prints
"PORT <pop3> <pop3s> <imap> <imaps>" once every port accepts connections (the plain ports offer
STLS/STARTTLS; the others are TLS from the first byte). --generate adds N messages, --mailbox
empty folders, --folder runs in a given folder (so a test may change a maildir under dovecot). Accounts: tests/servers/dovecot/
mail-passwd (alice and bob, password "pencil"). TLS uses --certs DIR (made by tests/certs.sh:
good.pem / good.key, for 127.0.0.1), or a fresh set made in the folder. Stays up until
SIGTERM/SIGINT or until its stdin reaches EOF; then stops dovecot and removes the folder.
--generate USER:COUNT:SIZE seeds COUNT generated messages of SIZE bytes each (after the --message
ones), for the receiving benchmarks (bench/run-receive): thousands without a fixture file each.
Started by tests/harness.c like the other servers (the helpers are dovecot_submission.py's).
"""

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import dovecot_submission as common

HERE = os.path.dirname(os.path.abspath(__file__))


def write_config(folder, ports, certs):
    internal, login, mail = common.users()
    values = {
        "@DIR@": folder,
        "@POP3@": str(ports[0]),
        "@POP3S@": str(ports[1]),
        "@IMAP@": str(ports[2]),
        "@IMAPS@": str(ports[3]),
        "@CERT@": os.path.join(certs, "good.pem"),
        "@KEY@": os.path.join(certs, "good.key"),
        "@INTERNAL_USER@": internal,
        "@LOGIN_USER@": login,
        "@MAIL_USER@": mail,
        "@MAIL_GROUP@": grp.getgrgid(pwd.getpwnam(mail).pw_gid).gr_name,
        # a copy under the folder: dovecot's unprivileged auth cannot read a tree kept in a
        # 0700 directory (tools/check-asan.sh's scratch copy)
        "@PASSWD@": os.path.join(folder, "passwd"),
    }
    with open(os.path.join(HERE, "dovecot", "mail.conf.in"), encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(key, value)
    path = os.path.join(folder, "dovecot.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    shutil.copyfile(os.path.join(HERE, "dovecot", "mail-passwd"), os.path.join(folder, "passwd"))
    os.chmod(os.path.join(folder, "passwd"), 0o644)
    for sub in ("run", "state", "home"):
        os.mkdir(os.path.join(folder, sub))
    return path


def user_spec(spec, option):
    user, _, rest = spec.partition(":")
    if not user or not rest:
        raise SystemExit(f"dovecot_mail.py: {option} {spec!r} is not USER:VALUE")
    return user, rest


def maildir_of(folder, user, box=None):
    maildir = os.path.join(folder, "home", user, "Maildir")
    if box:
        maildir = os.path.join(maildir, "." + box)  # Maildir++: a folder is a dot directory
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    return maildir


def seed(folder, messages, generate=(), mailboxes=()):
    """Each "user:file" into user's Maildir/new in the order given (their numbers follow it),
    then "user:N" generated messages ("Subject: bulk <i>"), and "user:NAME" empty mailboxes;
    the tree is then the mail user's (dovecot's mail processes never run as root)."""
    items = []
    for spec in messages:
        user, path = user_spec(spec, "--message")
        with open(path, "rb") as f:
            items.append((user, f.read().replace(b"\r\n", b"\n")))
    for spec in generate:
        user, rest = user_spec(spec, "--generate")
        count, _, size = rest.partition(":")
        try:
            count, size = int(count), int(size) if size else 0
        except ValueError:
            raise SystemExit(f"dovecot_mail.py: --generate {spec!r} is not USER:N[:SIZE]")
        for j in range(count):
            items.append((user, generated(j + 1, size) if size else
                          f"From: bulk@example.org\nSubject: bulk {j + 1}\n\n"
                          f"bulk body {j + 1}\n".encode()))
    for i, (user, data) in enumerate(items):
        # maildir names sort by their time part: the order given is the order served
        name = f"{1700000000 + i}.M{i}P{os.getpid()}.emailsession"
        with open(os.path.join(maildir_of(folder, user), "new", name), "wb") as f:
            f.write(data)
    for spec in mailboxes:
        maildir_of(folder, *user_spec(spec, "--mailbox"))
    uid = pwd.getpwnam(common.users()[2]).pw_uid
    gid = pwd.getpwnam(common.users()[2]).pw_gid
    for root, dirs, files in os.walk(os.path.join(folder, "home")):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
    os.chown(os.path.join(folder, "home"), uid, gid)


def generated(number, size):
    """A plain text message of exactly size bytes (LF line ends, as stored; at least ~200), the
    same for a given number: 72-character lines of its own text after a few header fields."""
    head = (f"From: Bench Sender <sender{number}@example.test>\n"
            f"To: alice@example.test\n"
            f"Subject: generated message {number}\n"
            f"Date: Tue, 01 Dec 2026 10:00:00 +0000\n"
            f"Message-ID: <gen{number}@example.test>\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=us-ascii\n\n").encode()
    line = (f"message {number} " + "0123456789abcdefghijklmnopqrstuvwxyz" * 2)[:71].encode() + b"\n"
    room = max(size - len(head), 1)
    body = (line * (room // len(line) + 1))[:room - 1] + b"\n"
    return head + body



def make_certs(folder):
    certs = os.path.join(folder, "certs")
    subprocess.run(["sh", os.path.join(HERE, "..", "certs.sh"), certs], check=True,
                   stdout=subprocess.DEVNULL)
    return certs


def run(folder, args):
    ports = []
    while len(ports) < 4:
        p = common.free_port("127.0.0.1")
        if p not in ports:
            ports.append(p)
    certs = os.path.abspath(args.certs) if args.certs else make_certs(folder)
    config = write_config(folder, ports, certs)
    seed(folder, args.message, args.generate, args.mailbox)
    proc = subprocess.Popen([common.DOVECOT, "-F", "-c", config], stdin=subprocess.DEVNULL,
                            preexec_fn=common.die_with_parent)
    try:
        if not all(common.wait_listening(p, proc, 10) for p in ports):
            log = os.path.join(folder, "dovecot.log")
            if os.path.exists(log):
                sys.stderr.write(open(log, encoding="utf-8", errors="replace").read())
            print("dovecot_mail.py: dovecot did not start", file=sys.stderr)
            return 1
        print("PORT " + " ".join(str(p) for p in ports), flush=True)
        common.wait_for_end(proc)
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="ignored: the ports are always free ones")
    p.add_argument("--certs", help="folder of tests/certs.sh's files (default: a fresh set)")
    p.add_argument("--message", action="append", default=[], metavar="USER:FILE",
                   help="a fixture message for USER (repeat; numbered in this order)")
    p.add_argument("--generate", action="append", default=[], metavar="USER:N[:SIZE]",
                   help="N generated messages for USER after the fixtures: \"Subject: bulk <i>\" "
                        "ones, or with SIZE the benchmarks' messages of SIZE bytes (repeat)")
    p.add_argument("--mailbox", action="append", default=[], metavar="USER:NAME",
                   help="an empty mailbox NAME for USER besides INBOX (repeat)")
    p.add_argument("--folder", help="the folder to run in (made if missing, removed at the end; "
                   "default: a fresh temporary one), so a test can reach the maildirs; its "
                   "parents must let dovecot's unprivileged processes through")
    args = p.parse_args(argv)
    if args.folder:
        os.makedirs(args.folder, exist_ok=True)
        folder = args.folder
    else:
        folder = tempfile.mkdtemp(prefix="emailsession-dovecot-mail-")
    os.chmod(folder, 0o755)  # dovecot's unprivileged processes read under it
    try:
        return run(folder, args)
    finally:
        if os.environ.get("EMAIL_TEST_KEEP"):
            print(f"dovecot_mail.py: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
