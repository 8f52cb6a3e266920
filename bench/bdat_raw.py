#!/usr/bin/python3
"""The raw client of the BDAT stream case: as fast as a client can go on one connection to a
CHUNKING + PIPELINING server. It writes the small benchmark message, already in its final bytes,
as `MAIL FROM / RCPT TO / BDAT n LAST` transactions back to back, never waiting for a reply
before writing more (at most WINDOW commands unanswered, the bound emailsession uses), and
matches the replies in order.

    bdat_raw.py PORT N MESSAGE_FILE     prints "RESULT msgs=N secs=S rate=R"

One warm-up transaction goes before the clock starts, as in es_bench. Standard library only.
"""
import selectors
import socket
import sys
import time

WINDOW = 100


def read_reply(buf):
    """(code, rest) once buf holds a whole reply, else (None, buf)."""
    pos = 0
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, buf
        line = buf[pos:end]
        pos = end + 2
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), buf[pos:]


def main():
    port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(path, "rb") as f:
        body = f.read()
    txn = (b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.org>\r\n"
           b"BDAT %d LAST\r\n" % len(body)) + body
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def replies(count):
        nonlocal buf
        codes = []
        while len(codes) < count:
            code, buf = read_reply(buf)
            if code is None:
                data = s.recv(65536)
                if not data:
                    sys.exit("bdat_raw: the server closed the connection")
                buf += data
            else:
                codes.append(code)
        return codes

    replies(1)
    s.sendall(b"EHLO bench.example\r\n")
    replies(1)
    s.sendall(txn)
    if replies(3)[2] != 250:
        sys.exit("bdat_raw: the warm-up message was refused")
    sent = got = failed = 0   # transactions written, replies read (three a transaction)
    t0 = time.perf_counter()
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    pending = b""
    while got < 3 * n:
        while sent < n and 3 * (sent + 1) - got <= WINDOW:
            pending += txn
            sent += 1
        if pending:
            try:
                k = s.send(pending)
                pending = pending[k:]
            except BlockingIOError:
                pass
        for _ in sel.select(0 if pending else None):
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sys.exit("bdat_raw: the server closed the connection")
            buf += data
            while True:
                code, rest = read_reply(buf)
                if code is None:
                    break
                buf = rest
                got += 1
                failed += code >= 400
    secs = time.perf_counter() - t0
    s.setblocking(True)
    s.sendall(b"QUIT\r\n")
    s.close()
    if failed:
        sys.exit("bdat_raw: %d replies were refusals" % failed)
    print("RESULT msgs=%d secs=%.6f rate=%.2f" % (n, secs, n / secs))


if __name__ == "__main__":
    main()
