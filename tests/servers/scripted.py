#!/usr/bin/python3
"""Scripted, fault-injecting SMTP peer for the emailsession tests.

Listens on 127.0.0.1, prints "PORT <n>", accepts ONE connection and plays --script against it,
one step per line:

  send TEXT        send TEXT + CRLF (escapes: \\r \\n \\t \\\\ \\xHH, so one write can carry
                   several reply lines: "send 250-a\\r\\n250 b")
  sendraw TEXT     the same without the final CRLF
  expect REGEX     read one CRLF-terminated line; it must re.fullmatch REGEX (CRLF excluded)
  expect-data      read DATA content up to and including the line "."
  expect-bytes N   read exactly N bytes
  sleep SECONDS
  tls CERT KEY     TLS from here on (server side; implicit TLS, or after a STARTTLS 220)
  expect-close-notify  read until the client ends the TLS session; it must send close_notify
                   (a TCP close without it fails the step)
  close            close the connection (the script ends there)
  wait-close       wait until the client closes, then exit 0
  # comment, blank lines: ignored

Everything the client sends is appended raw to --record as it arrives. After the last step the
server keeps reading (and recording) until the client closes, for at most 10 s, then exits 0.
A failed step exits with status 3 and says why on stderr. EOF on stdin (when a pipe, socket or
tty) ends the server at any point, so a crashed test never leaves it behind.
"""

import argparse
import os
import re
import selectors
import socket
import ssl
import stat
import sys
import time

LINGER_SECONDS = 10


class ScriptError(Exception):
    pass


class StdinClosed(Exception):
    pass


def unescape(s):
    out = bytearray()
    i = 0
    simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out += c.encode("utf-8")
            i += 1
        elif s[i + 1] in simple:
            out += simple[s[i + 1]]
            i += 2
        elif s[i + 1] == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", s[i + 2:i + 4]):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            raise ScriptError(f"bad escape in {s!r}")
    return bytes(out)


def parse_script(path):
    steps = []
    with open(path, encoding="utf-8", newline="") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")  # keep trailing spaces: they can matter in a reply
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            verb, _, arg = line.partition(" ")
            if verb in ("send", "sendraw"):
                steps.append((number, verb, unescape(arg)))
            elif verb == "expect":
                steps.append((number, verb, re.compile(arg)))
            elif verb == "tls":
                files = arg.split()
                if len(files) != 2:
                    raise ScriptError(f"line {number}: tls needs CERT KEY")
                steps.append((number, verb, files))
            elif verb == "expect-close-notify":
                steps.append((number, verb, None))
            elif verb in ("expect-bytes", "sleep"):
                try:
                    value = int(arg) if verb == "expect-bytes" else float(arg)
                except ValueError:
                    raise ScriptError(f"line {number}: {verb} needs a number") from None
                steps.append((number, verb, value))
            elif verb in ("expect-data", "close", "wait-close") and not arg.strip():
                steps.append((number, verb, None))
            else:
                raise ScriptError(f"line {number}: cannot parse {line!r}")
    return steps


class Peer:
    """The one client connection: buffered reads that record everything and watch stdin."""

    def __init__(self, sock, record, timeout, sel):
        self.sock = sock
        self.record = record
        self.timeout = timeout
        self.sel = sel
        self.buf = b""
        self.eof = False
        self.close_notify = False   # the TLS session ended with the client's close_notify
        sel.register(sock, selectors.EVENT_READ)

    def start_tls(self, cert, key):
        """Server side of a TLS handshake; ragged EOFs are reported, not taken for a close."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        # Debian's Python takes a TCP close for close_notify unless told not to
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self.sel.unregister(self.sock)
        self.sock.settimeout(self.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True, suppress_ragged_eofs=False)
        except (OSError, ssl.SSLError) as e:
            raise ScriptError(f"TLS handshake failed: {e}") from None
        self.sock.settimeout(None)
        self.sel.register(self.sock, selectors.EVENT_READ)

    def recv(self):
        try:
            data = self.sock.recv(65536)
        except ssl.SSLError:
            return b""  # closed without close_notify (UNEXPECTED_EOF_WHILE_READING), or broken
        except ConnectionError:
            return b""
        if not data and isinstance(self.sock, ssl.SSLSocket):
            self.close_notify = True
        return data

    def fill(self, deadline):
        """Read one chunk into the buffer; False on timeout."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            ready = [(None, 0)] if pending else self.sel.select(remaining)
            for key, _ in ready:
                if key is not None and key.fileobj is not self.sock:
                    check_stdin()
                    continue
                data = self.recv()
                if not data:
                    self.eof = True
                    return True
                self.record.write(data)
                self.record.flush()
                self.buf += data
                return True

    def read_until(self, what, description):
        deadline = time.monotonic() + self.timeout
        while True:
            end = self.buf.find(what)
            if end >= 0:
                end += len(what)
                chunk, self.buf = self.buf[:end], self.buf[end:]
                return chunk
            if self.eof:
                raise ScriptError(f"client closed while waiting for {description}; "
                                  f"unread: {self.buf!r}")
            if not self.fill(deadline):
                raise ScriptError(f"timed out waiting for {description}; unread: {self.buf!r}")

    def read_line(self, description):
        line = self.read_until(b"\n", description)
        if not line.endswith(b"\r\n"):
            raise ScriptError(f"line not terminated by CRLF while waiting for {description}: "
                              f"{line!r}")
        return line[:-2]

    def read_bytes(self, n):
        deadline = time.monotonic() + self.timeout
        while len(self.buf) < n:
            if self.eof:
                raise ScriptError(f"client closed after {len(self.buf)} of {n} bytes")
            if not self.fill(deadline):
                raise ScriptError(f"timed out after {len(self.buf)} of {n} bytes")
        chunk, self.buf = self.buf[:n], self.buf[n:]
        return chunk

    def idle(self, seconds):
        """Sleep, still recording what arrives and watching stdin."""
        deadline = time.monotonic() + seconds
        while not self.eof and self.fill(deadline):
            pass
        time.sleep(max(0.0, deadline - time.monotonic()))

    def wait_eof(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.eof:
            if not self.fill(deadline):
                return False
        return True

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ScriptError(f"send failed: {e}") from None


def check_stdin():
    if not os.read(0, 4096):
        raise StdinClosed()


def run(steps, peer):
    for number, verb, arg in steps:
        if verb == "send":
            peer.send(arg + b"\r\n")
        elif verb == "sendraw":
            peer.send(arg)
        elif verb == "expect":
            line = peer.read_line(f"line {number} /{arg.pattern}/")
            if not arg.fullmatch(line.decode("utf-8", "surrogateescape")):
                raise ScriptError(f"line {number}: expected /{arg.pattern}/, got {line!r}")
        elif verb == "expect-data":
            while peer.read_line(f"line {number} DATA content") != b".":
                pass
        elif verb == "expect-bytes":
            peer.read_bytes(arg)
        elif verb == "sleep":
            peer.idle(arg)
        elif verb == "tls":
            peer.start_tls(*arg)
        elif verb == "expect-close-notify":
            if not peer.wait_eof(peer.timeout):
                raise ScriptError(f"line {number}: the client did not end the TLS session")
            if not peer.close_notify:
                raise ScriptError(f"line {number}: the client closed without close_notify")
            return
        elif verb == "close":
            return
        elif verb == "wait-close":
            if not peer.wait_eof(peer.timeout):
                raise ScriptError(f"line {number}: the client did not close the connection")
            return
    peer.wait_eof(LINGER_SECONDS)


def stdin_watchable():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    # /dev/null (a background shell job's stdin) would mean "exit at once": don't watch it.
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--script", required=True, metavar="FILE")
    p.add_argument("--record", required=True, metavar="FILE")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds any one read may wait (default 10)")
    args = p.parse_args(argv)
    try:
        steps = parse_script(args.script)
    except (OSError, ScriptError, re.error) as e:
        print(f"scripted.py: {e}", file=sys.stderr)
        return 2

    sel = selectors.DefaultSelector()
    if stdin_watchable():
        sel.register(0, selectors.EVENT_READ)
    record = open(args.record, "ab")
    listener = socket.create_server((args.host, args.port))
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    conn = None
    try:
        sel.register(listener, selectors.EVENT_READ)
        while conn is None:
            for key, _ in sel.select():
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                else:
                    check_stdin()
        sel.unregister(listener)
        listener.close()
        run(steps, Peer(conn, record, args.timeout, sel))
    except StdinClosed:
        return 0
    except ScriptError as e:
        print(f"scripted.py: {e}", file=sys.stderr)
        return 3
    finally:
        if conn is not None:
            conn.close()
        record.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
