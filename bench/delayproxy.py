#!/usr/bin/python3
"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay to every chunk, in both directions.

    delayproxy.py --target PORT [--listen PORT] [--delay-ms 5]

With 5 ms each way a request/reply costs one extra 10 ms round trip, like a server across a
city. Prints "LISTENING <port>" once ready (port 0 = pick a free one).

Each chunk is stamped with (arrival + delay) when it is read and written when that instant comes,
so delays do not add up along a stream and order is kept (one queue and one writer per
direction). The timer is asyncio's for all but the last millisecond, then a short spin: epoll
rounds its timeout up to the next millisecond (up to 1 ms extra per hop) and nanosleep's timer
slack adds ~50 us more. What remains is the forwarding itself, ~0.1 ms per round trip, which
bench/run measures and prints next to the results.
Nagle is off on both sides so the kernel does not hold small replies back on top of the delay.
"""
import argparse
import asyncio
import socket
import sys
import time

_SLACK = 0.001


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it arrived."""
    # Unbounded: the benchmark sends small messages through here; a bulk transfer would want a
    # bound, which would then add flow-control delay of its own.
    queue = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((time.monotonic() + delay, b""))

    async def deliver():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > _SLACK:
                    await asyncio.sleep(wait - _SLACK)
                while time.monotonic() < due:
                    pass  # the last millisecond: a spin is precise, epoll and nanosleep are not
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()  # half-close, as the sender did
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(receive(), deliver())


async def _serve(client_r, client_w, target, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        client_w.close()
        return
    _nodelay(client_w)
    _nodelay(server_w)
    try:
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay))
    finally:
        for w in (client_w, server_w):
            w.close()


async def _main(args):
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, args.target, delay), "127.0.0.1", args.listen)
    port = server.sockets[0].getsockname()[1]
    print("LISTENING %d" % port, flush=True)
    async with server:
        await server.serve_forever()


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
