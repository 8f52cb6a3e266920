#!/usr/bin/python3
"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay to every chunk, in both directions.

    delayproxy.py --target PORT [--listen PORT] [--delay-ms 5]

With 5 ms each way a request/reply costs one extra 10 ms round trip, like a server across a
city. Prints "LISTENING <port>" once ready (port 0 = pick a free one).

How it keeps to the configured delay and adds nothing of its own:
- each chunk is due at (the instant the kernel received it + delay): the instant comes from the
  socket's receive timestamp (SO_TIMESTAMPNS), so neither the proxy's own wake-up nor time spent
  on the other direction makes a chunk late; without timestamps, the time it was read is used;
- due times are stamped on arrival, so delays do not accumulate along a stream, and each
  direction is one FIFO with one writer, so order is kept;
- asyncio's timer wakes us up to 1 ms early (epoll rounds its timeout up to whole milliseconds)
  and a short spin waits for the exact instant;
- Nagle is off on both sides so the kernel does not hold small replies back on top of the delay.
Built on the asyncio loop's low-level reader/writer callbacks rather than streams, to get at
recvmsg's ancillary data. Meant for the benchmark's small request/reply traffic: it reads as fast
as data comes and does not apply back-pressure beyond the socket buffers.
"""
import argparse
import asyncio
import collections
import socket
import struct
import sys
import time

_SLACK = 0.0012  # wake up this early, then spin: more than epoll's 1 ms rounding
_SO_TIMESTAMPNS = 35  # Linux asm-generic value (SO_TIMESTAMPNS_OLD); Python has no constant
_TIMESPEC = struct.Struct("@qq")


def _arrival(ancdata):
    """The kernel's receive time of this chunk on the monotonic clock, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            now_mono = time.monotonic()
            mono = sec + nsec / 1e9 - (time.time() - now_mono)  # realtime -> monotonic
            # trust it only when plausible: a clock step must not stall or rush a chunk
            if now_mono - 1.0 < mono <= now_mono + 0.0001:
                return min(mono, now_mono)
    return None


class _Direction:
    """Bytes from src to dst, each chunk written `delay` seconds after it arrived."""

    def __init__(self, pair, src, dst, delay):
        self.pair, self.src, self.dst, self.delay = pair, src, dst, delay
        self.loop = pair.loop
        self.queue = collections.deque()  # (due, bytes); b"" = end of stream
        self.timer = None
        self.out = bytearray()  # what dst's socket buffer could not take yet
        self.eof_pending = False
        self.done = False
        self.cmsg = socket.CMSG_SPACE(_TIMESPEC.size)
        self.loop.add_reader(src.fileno(), self._readable)

    def _readable(self):
        try:
            data, anc, _, _ = self.src.recvmsg(65536, self.cmsg)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, anc = b"", []  # a reset ends the stream like a close
        due = (_arrival(anc) or time.monotonic()) + self.delay
        self.queue.append((due, data))
        if not data:
            self.loop.remove_reader(self.src.fileno())
        self._arm()

    def _arm(self):
        if self.timer is None and self.queue:
            # asyncio's clock is time.monotonic(), the one the due times use
            self.timer = self.loop.call_at(self.queue[0][0] - _SLACK, self._fire)

    def _fire(self):
        self.timer = None
        while self.queue and self.queue[0][0] - time.monotonic() < _SLACK:
            due, data = self.queue.popleft()
            while time.monotonic() < due:
                pass
            if data:
                self.out += data
            else:
                self.eof_pending = True
            self._flush()
            if self.done:
                return
        self._arm()

    def _flush(self):
        try:
            while self.out:
                n = self.dst.send(self.out)
                del self.out[:n]
        except (BlockingIOError, InterruptedError):
            self.loop.add_writer(self.dst.fileno(), self._writable)
            return
        except OSError:
            self.pair.close()
            return
        if self.eof_pending:
            try:
                self.dst.shutdown(socket.SHUT_WR)  # half-close, as the sender did
            except OSError:
                pass
            self.done = True
            self.pair.direction_done()

    def _writable(self):
        self.loop.remove_writer(self.dst.fileno())
        self._flush()

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()
        self.done = True


class _Pair:
    """One proxied connection: client <-> server."""

    def __init__(self, loop, client, server, delay):
        self.loop, self.socks, self.closed, self.finished = loop, (client, server), False, 0
        self.dirs = (_Direction(self, client, server, delay), _Direction(self, server, client, delay))

    def direction_done(self):
        self.finished += 1
        if self.finished == 2:
            self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        for d in self.dirs:
            d.stop()
        for s in self.socks:
            for remove in (self.loop.remove_reader, self.loop.remove_writer):
                remove(s.fileno())
            s.close()


def _prepare(sock):
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # no kernel timestamps: arrival is then the time the chunk was read


async def _main(args):
    loop = asyncio.get_running_loop()
    delay = args.delay_ms / 1000.0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen))
    listener.listen(1024)
    listener.setblocking(False)

    def accept():
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            # loopback: the connect completes at once, no need to wait on the loop for it
            server = socket.create_connection(("127.0.0.1", args.target), timeout=5)
        except OSError:
            client.close()
            return
        _prepare(client)
        _prepare(server)
        _Pair(loop, client, server, delay)

    loop.add_reader(listener.fileno(), accept)
    print("LISTENING %d" % listener.getsockname()[1], flush=True)
    await asyncio.Event().wait()  # until killed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", type=int, required=True, help="port on 127.0.0.1 to forward to")
    p.add_argument("--listen", type=int, default=0, help="port to listen on (0: any free one)")
    p.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay per chunk")
    args = p.parse_args()
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
