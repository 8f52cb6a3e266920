#!/usr/bin/python3
"""A slow link for tests: a TCP proxy on 127.0.0.1 that forwards to --to PORT, limiting the
client-to-server direction to --rate bytes per second. Prints "PORT <n>" once listening; stops on
SIGTERM or when its stdin reaches EOF.
"""
import argparse
import asyncio
import os
import signal
import socket
import stat
import sys


async def pipe(reader, writer, rate):
    try:
        while True:
            data = await reader.read(16384)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--to", type=int, required=True, help="the server's port on 127.0.0.1")
    p.add_argument("--rate", type=int, default=1_000_000, help="bytes per second upstream")
    args = p.parse_args()

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", args.to)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer, args.rate),
                             pipe(server_reader, client_writer, 0))

    # A small receive buffer, as a slow link has: what is not forwarded yet waits in the
    # client's socket (its unacknowledged bytes), not in ours, acknowledged and invisible.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.bind(("127.0.0.1", args.port))
    server = await asyncio.start_server(handle, sock=sock)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mode = os.fstat(0).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # the test holds a pipe: EOF means it died
        loop.add_reader(0, lambda: stop.set() if not os.read(0, 4096) else None)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
