"""Benchmark: the CPU an asyncio server spends per wake-up before it runs any MQTT code.

How this works: a child process runs an asyncio server whose protocol echoes every read back
(``asyncio.BufferedProtocol``, the kind the emulator's server uses; ``--raw`` uses
``loop.add_reader`` and plain socket calls instead). This process sends one byte, waits for the
echo, 50,000 times, and divides the server's CPU time (utime + stime from /proc) by the round
trips. Each round trip is one wake-up of the event loop, one ``recv`` and one ``send``: the
floor under the emulator's CPU per task in bench_emulator.py, which needs about one wake-up
per task at QoS 0 and nearly two at QoS 1 (a PUBLISH in, a PUBACK in) when the clients,
not the broker, set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")


class _Echo(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = memoryview(bytearray(65536))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.transport.write(self.buf[:nbytes].tobytes())


async def _serve(report_fd: int, raw: bool) -> None:
    loop = asyncio.get_running_loop()
    if not raw:
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        os.write(report_fd, b"%d\n" % server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    os.write(report_fd, b"%d\n" % listener.getsockname()[1])
    conn, _ = await loop.sock_accept(listener)
    conn.setblocking(False)
    buf = bytearray(65536)
    view = memoryview(buf)

    def echo() -> None:
        n = conn.recv_into(buf)
        conn.send(view[:n].tobytes())

    loop.add_reader(conn.fileno(), echo)
    await asyncio.Event().wait()


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="CPU per event-loop wake-up of an asyncio echo server.")
    p.add_argument("--round-trips", type=int, default=50_000)
    p.add_argument("--raw", action="store_true", help="loop.add_reader instead of a transport")
    args = p.parse_args(argv)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server
        os.close(r)
        asyncio.run(_serve(w, args.raw))
        os._exit(0)
    os.close(w)
    try:
        port = int(os.read(r, 64))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            s.recv(16)
            cpu0, t0 = _cpu(pid), time.monotonic()
            for _ in range(args.round_trips):
                s.sendall(b"x")
                s.recv(16)
            cpu1, t1 = _cpu(pid), time.monotonic()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    kind = "add_reader + socket calls" if args.raw else "BufferedProtocol transport"
    print(f"asyncio echo server ({kind}): {(cpu1 - cpu0) / args.round_trips * 1e6:.1f} µs CPU "
          f"per round trip, {args.round_trips / (t1 - t0):,.0f} round trips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
