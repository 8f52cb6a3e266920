#!/usr/bin/python3
"""Python's poplib side of the receiving benchmarks (bench/run-receive), one measurement a process.

    py_recv.py fetch PORT N        retr(i) for i = 1..N on one POP3 object, plain text
    py_recv.py headers PORT N CA   top(i, 0) for i = 1..N after stls() (as the other clients)
    py_recv.py big PORT            retr(1) (poplib gathers the message as a list of lines)

Logged in before the clock starts. Prints one "RESULT key=value ..." line; on failure a
"FAIL ..." line on stderr and exit status 2. poplib does not parse MIME: transport only.
"""
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


def login(port, ca=None):
    box = poplib.POP3("127.0.0.1", port, timeout=60)
    if ca:
        box.stls(ssl.create_default_context(cafile=ca))
    box.user("alice")
    box.pass_("pencil")
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
    box = login(port)
    t0 = time.perf_counter()
    _, lines, octets = box.retr(1)
    secs = time.perf_counter() - t0
    rss = maxrss_kb()
    del lines
    box.quit()
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
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, poplib.error_proto) as e:
        print("FAIL %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
