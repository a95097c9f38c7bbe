"""Which process owns which TCP connection (psutil): how ``--exec`` ties a broker connection
to the worker process that opened it, children of children included; ``Owners`` keeps what
was learnt about the emulator's connections for one run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from .procs import WorkerProcesses


def process_tree_pids(pid: int) -> set[int]:
    """``pid`` and every descendant of it (empty when ``pid`` is gone)."""
    try:
        root = psutil.Process(pid)
        out = {root.pid}
        out.update(child.pid for child in root.children(recursive=True))
    except psutil.NoSuchProcess:
        return set()
    except psutil.AccessDenied:
        return {pid}
    return out


def _tcp_connections(proc: psutil.Process) -> list[Any]:
    getter = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
    return list(getter(kind="tcp"))


def _loopback_match(ip: str, want: str | None) -> bool:
    if want is None:
        return True
    return ip == want or ip == "::ffff:" + want


def _plain_ip(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def tcp_peers(
    pids: Iterable[int], remote_port: int, *, remote_host: str | None = "127.0.0.1",
) -> dict[tuple[str, int], int]:
    """Which local TCP endpoints connected to ``remote_host:remote_port`` belong to which of
    ``pids``: ``{(local ip, local port): pid}``. A connection held by a descendant of a pid
    (a worker's own child) maps to that pid. ``remote_host=None`` accepts any remote host;
    an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is given as plain IPv4.
    """
    out: dict[tuple[str, int], int] = {}
    for root in pids:
        for member in sorted(process_tree_pids(root)):
            for conn in _connections_of(member):
                raddr = conn.raddr
                if not raddr or raddr.port != remote_port:
                    continue
                if not _loopback_match(raddr.ip, remote_host) or not conn.laddr:
                    continue
                out.setdefault((_plain_ip(conn.laddr.ip), conn.laddr.port), root)
    return out


def _connections_of(pid: int) -> Iterator[Any]:
    try:
        yield from _tcp_connections(psutil.Process(pid))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return


class Owners:
    """Which process owns each connection the emulator saw (kept once learnt: a connection
    that closes later is still that process's), and the client ids each process used."""

    def __init__(self, em: object | None, port: int, pool: WorkerProcesses) -> None:
        self.em = em  # the embedded emulator (None: a real broker, nothing to learn)
        self.port = port
        self.pool = pool
        self.conns: dict[int, str] = {}  # connection id -> process name
        self.peers: dict[tuple[str, int], str] = {}  # TCP peer -> process name
        self.clients: dict[str, set[str]] = {}  # client id -> processes seen using it

    def refresh(self) -> None:
        em = self.em
        if em is None:
            return
        views = [v for v in em.clients()  # type: ignore[attr-defined]
                 if v.peer is not None and v.conn_id is not None and v.conn_id not in self.conns]
        if not views:  # every connection is known: no need to scan the processes' sockets
            return
        pids = self.pool.pids()
        by_pid = {pid: name for name, pid in pids.items()}
        peers = tcp_peers(pids.values(), self.port)
        for view in views:
            pid = peers.get(tuple(view.peer))
            if pid is None:
                continue
            name = by_pid[pid]
            self.conns[view.conn_id] = name
            self.peers[tuple(view.peer)] = name
            self.clients.setdefault(view.client_id, set()).add(name)

    def of_conn(self, conn_id: int) -> str | None:
        return self.conns.get(conn_id)

    def names_of(self, client_id: str) -> set[str]:
        return self.clients.get(client_id, set())
