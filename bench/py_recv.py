#!/usr/bin/python3
"""Python's poplib and imaplib side of the receiving benchmarks (bench/run-receive), one
measurement a process.

    py_recv.py fetch PORT N        retr(i) for i = 1..N on one POP3 object, plain text
    py_recv.py headers PORT N CA   top(i, 0) for i = 1..N after stls() (as the other clients)
    py_recv.py big PORT            retr(1) (poplib gathers the message as a list of lines)

    IMAP (imaplib; PORT: dovecot's IMAP port, plain text; logged in, INBOX selected first):
    py_recv.py imap-fetch PORT N        uid("FETCH", i, "(RFC822)") for i = 1..N, as a typical
                                        imaplib user writes it
    py_recv.py imap-fetch-batch PORT N  one uid("FETCH", "1:N", "(BODY.PEEK[])"): all N in one
                                        command (imaplib gathers every literal in memory)
    py_recv.py imap-headers PORT N      uid("FETCH", i, "(BODY.PEEK[HEADER])") for i = 1..N
    py_recv.py imap-big PORT            uid("FETCH", "1", "(RFC822)"), the message in memory

Logged in before the clock starts. Prints one "RESULT key=value ..." line; on failure a
"FAIL ..." line on stderr and exit status 2. poplib and imaplib do not parse MIME: transport
only.
"""
import imaplib
import poplib
import ssl
import sys
import time


def maxrss_kb():
    """VmHWM of this process (ru_maxrss would carry the runner's peak over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def login(port, ca=None, warm=True):
    box = poplib.POP3("127.0.0.1", port, timeout=60)
    if ca:
        box.stls(ssl.create_default_context(cafile=ca))
    box.user("alice")
    box.pass_("pencil")
    if warm:  # a first read before the clock, as every client here (es_recv.c's open_box)
        box.top(1, 0)
    return box


def check_subject(lines, i):
    want = b"Subject: generated message %d" % i
    if want not in lines:
        raise SystemExit("FAIL message %d: %r not among its lines" % (i, want))


def fetch(port, n, ca=None, headers=False):
    box = login(port, ca)
    nbytes = 0
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        _, lines, octets = box.top(i, 0) if headers else box.retr(i)
        check_subject(lines, i)
        nbytes += octets
    secs = time.perf_counter() - t0
    box.quit()
    print("RESULT rate=%.1f secs=%.4f msgs=%d bytes=%d maxrss_kb=%d"
          % (n / secs, secs, n, nbytes, maxrss_kb()))


def big(port):
    box = login(port, warm=False)
    t0 = time.perf_counter()
    _, lines, octets = box.retr(1)
    secs = time.perf_counter() - t0
    rss = maxrss_kb()
    del lines
    box.quit()
    print("RESULT secs=%.4f bytes=%d maxrss_kb=%d" % (secs, octets, rss))


def imap_login(port):
    box = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    box.login("alice", "pencil")
    typ, _ = box.select("INBOX")
    if typ != "OK":
        raise SystemExit("FAIL SELECT INBOX: %s" % typ)
    # a first FETCH before the clock, as every client here (see es_recv.c's open_imap)
    imap_bodies(*box.uid("FETCH", "1", "(BODY.PEEK[HEADER])"), "a first UID FETCH")
    return box


def imap_bodies(typ, data, what):
    """The literals of a FETCH response, in order."""
    if typ != "OK":
        raise SystemExit("FAIL %s: %s %r" % (what, typ, data))
    return [d[1] for d in data if isinstance(d, tuple)]


def imap_fetch(port, n, item):
    box = imap_login(port)
    nbytes = 0
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        bodies = imap_bodies(*box.uid("FETCH", str(i), item), "UID FETCH %d" % i)
        if len(bodies) != 1:
            raise SystemExit("FAIL UID FETCH %d: %d literals" % (i, len(bodies)))
        check_subject(bodies[0].split(b"\r\n"), i)
        nbytes += len(bodies[0])
    secs = time.perf_counter() - t0
    box.logout()
    print("RESULT rate=%.1f secs=%.4f msgs=%d bytes=%d maxrss_kb=%d"
          % (n / secs, secs, n, nbytes, maxrss_kb()))


def imap_fetch_batch(port, n):
    box = imap_login(port)
    t0 = time.perf_counter()
    bodies = imap_bodies(*box.uid("FETCH", "1:%d" % n, "(BODY.PEEK[])"), "UID FETCH 1:%d" % n)
    if len(bodies) != n:
        raise SystemExit("FAIL UID FETCH 1:%d: %d literals" % (n, len(bodies)))
    nbytes = 0
    for i, body in enumerate(bodies, 1):  # dovecot answers in sequence order: UID i is i-th
        check_subject(body.split(b"\r\n"), i)
        nbytes += len(body)
    secs = time.perf_counter() - t0
    box.logout()
    print("RESULT rate=%.1f secs=%.4f msgs=%d bytes=%d maxrss_kb=%d"
          % (n / secs, secs, n, nbytes, maxrss_kb()))


def imap_big(port):
    box = imap_login(port)
    t0 = time.perf_counter()
    bodies = imap_bodies(*box.uid("FETCH", "1", "(RFC822)"), "UID FETCH 1")
    secs = time.perf_counter() - t0
    rss = maxrss_kb()
    octets = sum(len(b) for b in bodies)
    del bodies
    box.logout()
    print("RESULT secs=%.4f bytes=%d maxrss_kb=%d" % (secs, octets, rss))


def main(argv):
    # poplib's line cap (2048) is below what a message may hold; the peers have none
    poplib._MAXLINE = 1 << 20
    try:
        if len(argv) == 3 and argv[0] == "fetch":
            fetch(int(argv[1]), int(argv[2]))
        elif len(argv) == 4 and argv[0] == "headers":
            fetch(int(argv[1]), int(argv[2]), argv[3], headers=True)
        elif len(argv) == 2 and argv[0] == "big":
            big(int(argv[1]))
        elif len(argv) == 3 and argv[0] == "imap-fetch":
            imap_fetch(int(argv[1]), int(argv[2]), "(RFC822)")
        elif len(argv) == 3 and argv[0] == "imap-fetch-batch":
            imap_fetch_batch(int(argv[1]), int(argv[2]))
        elif len(argv) == 3 and argv[0] == "imap-headers":
            imap_fetch(int(argv[1]), int(argv[2]), "(BODY.PEEK[HEADER])")
        elif len(argv) == 2 and argv[0] == "imap-big":
            imap_big(int(argv[1]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, poplib.error_proto, imaplib.IMAP4.error) as e:
        print("FAIL %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
