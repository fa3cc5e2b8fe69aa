"""Serve's ports: free ones from the kernel, embedder replicas on consecutive ports, ports in use."""

from __future__ import annotations

import socket
from collections.abc import Callable

from .errors import EXIT_USAGE, ServeError


def _socket_for(host: str) -> tuple[socket.socket, str]:
    host = host.strip("[]") or "127.0.0.1"
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM), host


def reserve_free_ports(host: str, count: int) -> list[int]:
    """Ports the kernel hands out as free, all distinct (the sockets stay bound until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock, address = _socket_for(host)
            sockets.append(sock)
            sock.bind((address, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(host: str, port: int) -> bool:
    sock, address = _socket_for(host)
    with sock:
        # Like the servers themselves: a port in TIME_WAIT counts as free, a listening one does not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def plan_ports(
    embedder_port: int, embedders: int, search_port: int, redis_port: int | None, free_ports: Callable[[int], list[int]]
) -> tuple[tuple[int, ...], int, int | None]:
    """Resolves the ports: 0 means a free one; embedder replicas count up from the first port, skipping
    the search and Redis ports."""
    wanted_free = embedders * (embedder_port == 0) + (search_port == 0) + (redis_port == 0)
    pool = free_ports(wanted_free) if wanted_free else []
    fixed = {p for p in (embedder_port, search_port, redis_port) if p}
    pool = [p for p in pool if p not in fixed]
    while len(pool) < wanted_free:  # a free port that collides with a fixed one: ask again
        pool.extend(p for p in free_ports(wanted_free - len(pool)) if p not in fixed and p not in pool)
    if redis_port == 0:
        redis_port = pool.pop()
    if search_port == 0:
        search_port = pool.pop()
    if redis_port is not None and redis_port == search_port:
        raise ServeError(f"--search-port and --redis-port are both {search_port}", EXIT_USAGE)
    if embedder_port == 0:
        embedder_ports = tuple(pool[:embedders])
    else:
        taken = {search_port, redis_port}
        ports: list[int] = []
        candidate = embedder_port
        while len(ports) < embedders:
            if candidate > 65535:
                raise ServeError(
                    f"not enough ports above --embedder-port {embedder_port} for {embedders} embedders", EXIT_USAGE
                )
            if candidate not in taken:
                ports.append(candidate)
            candidate += 1
        embedder_ports = tuple(ports)
    return embedder_ports, search_port, redis_port
