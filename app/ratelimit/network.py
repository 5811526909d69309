"""The client address a request is counted under; `X-Forwarded-For` only via trusted proxies."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.requests import HTTPConnection

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or header entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]
) -> str:
    """The right-most address not in `proxies`, walking `X-Forwarded-For` from the socket peer.

    Entries left of an untrusted hop are whatever the client chose to send, so they are never
    read; with no trusted proxies the header is ignored altogether.
    """
    current = parse_ip(peer or "")
    if current is None:
        return peer or "unknown"
    if _trusted(current, proxies):
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = parse_ip(hop)
            if address is None:
                break  # a malformed hop: the nearest trusted proxy is all we know
            current = address
            if not _trusted(address, proxies):
                break
    return bucket(current)


def bucket(address: IPAddress) -> str:
    """IPv4 addresses count alone; IPv6 by /64, the block one subscriber usually holds."""
    if isinstance(address, IPv6Address):
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def request_client_ip(conn: HTTPConnection, proxies: Sequence[IPNetwork]) -> str:
    """The client address of a request under the configured trusted proxies."""
    peer = conn.client.host if conn.client else None
    return client_address(peer, conn.headers.getlist("x-forwarded-for"), proxies)
