"""The client's address behind trusted proxies (TRUSTED_PROXIES, API.md "Limits").

Without trusted proxies the client is the TCP peer, whatever the request says.
When the peer is a trusted proxy, `X-Forwarded-For` is read from the right: each
trusted hop appended the address it was connected from, so the walk goes left
past trusted addresses and stops at the first untrusted one — the client as the
outermost trusted proxy saw it. Whatever a client wrote into the header itself
sits to the left of that and is never reached, so it cannot pick its own
address (and rate-limit bucket).

Where the walk runs out it keeps the last address it reached: every entry
trusted → the leftmost (the request came from inside the trusted networks, as
a health check does); an entry that is not an IP address → the address to its
right (nothing left of a garbled entry can be vouched for); no header → the peer.
Several header lines count as one list, in order: HAProxy adds a line of its
own rather than extending the client's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from engine.config import Network
from web.keys import SETTINGS

FORWARDED_FOR = "X-Forwarded-For"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The address resolved for a request ("" when unknown), computed once.
_CLIENT = web.RequestKey("client_address", str)


def client_address(request: web.Request) -> str | None:
    """The client's IP address (see the module's rule), or None when the
    transport has none (a Unix socket)."""
    if _CLIENT in request:
        return request[_CLIENT] or None
    peer = request.remote
    trusted = request.app[SETTINGS].trusted_proxies
    if trusted and peer:
        peer = forwarded_client(peer, request.headers.getall(FORWARDED_FOR, ()), trusted)
    request[_CLIENT] = peer or ""
    return peer


def forwarded_client(peer: str, header_lines: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client behind `peer`, from the `X-Forwarded-For` lines it sent."""
    address = parse_address(peer)
    if address is None or not is_trusted(address, trusted):
        return peer
    entries = [entry.strip() for line in header_lines for entry in line.split(",")]
    for entry in reversed(entries):
        if not entry:
            continue  # an empty list element (`a,,b`) says nothing
        hop = parse_address(entry)
        if hop is None:
            break
        address = hop
        if not is_trusted(address, trusted):
            break
    return str(address)


def parse_address(text: str) -> Address | None:
    """An IP address, an IPv4-mapped IPv6 one as the IPv4 address it is; None
    for anything else (a host name, an address with a port, garbage)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address in network for network in trusted)
