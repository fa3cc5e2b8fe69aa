"""Service addresses: HOST:PORT and explicit gRPC targets parsed, checked, and turned into channel targets."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from .errors import ServiceUnavailable

# The services, as calls and messages name them.
EMBEDDER = "embedder"
SEARCH = "search"


def split_host_port(address: str) -> tuple[str, str]:
    """HOST:PORT or [IPv6]:PORT as (host, port); ValueError says what is malformed."""
    address = address.strip()
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected [IPv6]:PORT")
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected HOST:PORT")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {address!r}: expected HOST:PORT")
    return host, port


_TARGET_SCHEMES = ("dns", "ipv4", "ipv6", "unix")


def is_explicit_target(address: str) -> bool:
    """A gRPC target naming its resolver ("dns:///host:port", "ipv4:10.0.0.1:50051,10.0.0.2:50051",
    "unix:/run/embedder.sock"), used as given, rather than HOST:PORT ("dns:50051" is the host "dns")."""
    scheme, sep, rest = address.strip().partition(":")
    return bool(sep) and scheme in _TARGET_SCHEMES and not rest.isdigit()


def check_target(target: str) -> str:
    """An explicit gRPC target, unchanged; ValueError says what is malformed."""
    target = target.strip()
    scheme, _, rest = target.partition(":")
    forms = {
        "dns": "dns:[//AUTHORITY/]HOST:PORT",
        "ipv4": "ipv4:IP:PORT[,IP:PORT…]",
        "ipv6": "ipv6:[IP]:PORT[,[IP]:PORT…]",
        "unix": "unix:PATH or unix:///ABSOLUTE/PATH",
    }
    problem = ValueError(f"bad target {target!r}: expected {forms.get(scheme, 'HOST:PORT')}")
    if scheme == "unix":
        if not rest.strip("/"):
            raise problem
        return target
    try:
        if scheme == "dns":
            name = rest
            if rest.startswith("//"):
                _, slash, name = rest[2:].partition("/")
                if not slash:
                    raise problem
            split_host_port(name)
            return target
        version = 4 if scheme == "ipv4" else 6
        for entry in rest.split(","):
            host, _ = split_host_port(entry)
            if ipaddress.ip_address(host).version != version or entry.strip() != entry:
                raise problem
    except ValueError:
        raise problem from None
    return target


def check_addresses(addresses: Sequence[str]) -> None:
    """Rejects a malformed HOST:PORT or target, or an explicit target listed beside other addresses."""
    explicit = [a for a in addresses if is_explicit_target(a)]
    if explicit and len(addresses) > 1:
        raise ValueError(
            f"the gRPC target {explicit[0]!r} must be the only address: list the replicas inside "
            "one target (ipv4:10.0.0.1:50051,10.0.0.2:50051) or give HOST:PORT addresses"
        )
    for address in addresses:
        if is_explicit_target(address):
            check_target(address)
        else:
            split_host_port(address)


def search_target(address: str) -> str:
    """The gRPC target of the search service: an explicit target as given, else a DNS name."""
    check_addresses([address])
    return address if is_explicit_target(address) else f"dns:///{address}"


def embedder_target(addresses: Sequence[str]) -> str:
    """One gRPC target that spreads calls over every replica.

    An explicit target (dns:, ipv4:, ipv6:, unix:) is used as given. One HOST:PORT address stays a DNS
    name (dns:///), so a name with several A records, such as a scaled docker-compose service, is balanced
    too. Several addresses are resolved once here into a static ipv4:/ipv6: target list. Either way gRPC's
    round_robin policy spreads calls over the replicas and fails over between them.
    """
    if not addresses:
        raise ValueError("no embedder address given")
    check_addresses(addresses)
    if is_explicit_target(addresses[0]):
        return addresses[0].strip()
    if len(addresses) == 1:
        host, port = split_host_port(addresses[0])
        return f"dns:///{_bracket(host)}:{port}"
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        host, port = split_host_port(address)
        for ip in _resolve(host, port):
            bucket = v4 if isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address) else v6
            entry = f"{ip}:{port}" if bucket is v4 else f"[{ip}]:{port}"
            if entry not in bucket:
                bucket.append(entry)
    if v4:  # a gRPC target holds one address family; IPv4 is what every replica is likely to have
        return "ipv4:" + ",".join(v4)
    return "ipv6:" + ",".join(v6)


def endpoints(addresses: Sequence[str]) -> list[tuple[str, int]]:
    """The (host, port) pairs named by HOST:PORT addresses or an explicit dns:, ipv4: or ipv6: target."""
    found: list[tuple[str, int]] = []
    for address in addresses:
        entries = [address]
        if is_explicit_target(address):
            scheme, _, rest = address.strip().partition(":")
            if scheme == "dns":
                entries = [rest[2:].partition("/")[2] if rest.startswith("//") else rest]
            elif scheme in ("ipv4", "ipv6"):
                entries = rest.split(",")
            else:
                entries = []
        for entry in entries:
            host, port = split_host_port(entry)
            found.append((host, int(port)))
    return found


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _resolve(host: str, port: str) -> list[str]:
    try:
        return [ipaddress.ip_address(host).compressed]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServiceUnavailable(EMBEDDER, f"{host}:{port}", f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
