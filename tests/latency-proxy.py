#!/usr/bin/env python3
"""A TCP proxy for tests and benchmarks: puts a round-trip time between IMAP
clients and a real server on 127.0.0.1, and logs what the clients send.

    latency-proxy.py TARGET-PORT RTT-MS LOG [LIFETIME-S]

Listens on 127.0.0.1 (a free port, printed on the first line of standard
output once it listens), forwards every connection to 127.0.0.1:TARGET-PORT,
and holds each chunk of data, either way, for RTT-MS / 2 before passing it on,
in order. Connections are numbered from 1 in the order they are accepted; LOG
gets one line "N COMMAND" for each line client N sends (its IMAP commands,
with their tags), and "N< LINE" for each line the server sends it (cut at 200
bytes), flushed at once. Ends when killed, or after LIFETIME-S
(default 900) seconds, so that a test that dies leaves nothing running.
"""

import asyncio
import sys
import time


async def pump(reader, writer, delay, on_line=None):
    """Copies reader to writer, each chunk held `delay` seconds."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(deliver())
    pending = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if on_line:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.rstrip(b"\r"))
                # A line is at most 64 KiB here; a literal's bytes are not commands.
                pending = pending[-65536:]
            queue.put_nowait((time.monotonic() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except ConnectionError:
        pass


async def main():
    target_port, rtt_ms, log_path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 900.0
    delay = rtt_ms / 2000.0
    log = open(log_path, "ab", buffering=0)
    connections = 0

    async def serve(client_reader, client_writer):
        nonlocal connections
        connections += 1
        number = connections
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)

        def logged(line):
            log.write(b"%d %s\n" % (number, line))

        def answered(line):
            log.write(b"%d< %s\n" % (number, line[:200]))

        await asyncio.gather(
            pump(client_reader, server_writer, delay, logged),
            pump(server_reader, client_writer, delay, answered),
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        await asyncio.wait_for(server.serve_forever(), lifetime)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":
    asyncio.run(main())
