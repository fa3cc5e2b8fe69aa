"""A small DNS server on loopback (UDP) whose A records a test changes while clients run."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable

_TYPE_A = 1
_CLASS_IN = 1
_FLAGS_ANSWER = 0x8180  # a response, recursion desired and available, no error
_FLAGS_NAME_ERROR = 0x8183  # the same with NXDOMAIN


class DnsServer:
    """Answers A queries for the names it holds (TTL 0), other types with no records, unknown names with
    NXDOMAIN. gRPC reaches it with a target that names it: dns://127.0.0.1:PORT/NAME:PORT."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self.queries: list[tuple[str, int]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def set(self, name: str, addresses: Iterable[str]) -> None:
        """From now on, `name` resolves to these IPv4 addresses."""
        with self._lock:
            self._records[name.lower().rstrip(".")] = tuple(addresses)

    def close(self) -> None:
        self._socket.close()
        self._thread.join(5)

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._socket.recvfrom(4096)
            except OSError:  # closed
                return
            try:
                reply = self._answer(query)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue  # not a query this server understands: no answer, as from a lost packet
            try:
                self._socket.sendto(reply, peer)
            except OSError:
                return

    def _answer(self, query: bytes) -> bytes:
        query_id, _flags, questions = struct.unpack(">HHH", query[:6])
        if questions != 1:
            raise IndexError("one question per query")
        position, labels = 12, []
        while query[position]:
            length = query[position]
            labels.append(query[position + 1 : position + 1 + length].decode("ascii"))
            position += 1 + length
        query_type, query_class = struct.unpack(">HH", query[position + 1 : position + 5])
        question = query[12 : position + 5]
        name = ".".join(labels).lower()
        with self._lock:
            self.queries.append((name, query_type))
            known = name in self._records
            addresses = self._records.get(name, ()) if (query_type, query_class) == (_TYPE_A, _CLASS_IN) else ()
        # Each answer points back at the question's name (offset 12) and holds one IPv4 address.
        answers = b"".join(
            struct.pack(">HHHIH", 0xC000 | 12, _TYPE_A, _CLASS_IN, 0, 4) + socket.inet_aton(address)
            for address in addresses
        )
        flags = _FLAGS_ANSWER if known else _FLAGS_NAME_ERROR
        return struct.pack(">HHHHHH", query_id, flags, 1, len(addresses), 0, 0) + question + answers
