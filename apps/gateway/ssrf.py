"""The SSRF guard: which addresses an upstream that is not marked ``internal`` may resolve to.

Checked when an upstream is registered and again at every connect, on the
addresses the name resolves to at that moment (DNS can change in between), and
the connection then goes to exactly the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPV6_ULA = ipaddress.ip_network("fc00::/7")
# IPv6 forms that embed an IPv4 address (NAT64, 6to4, Teredo): refused outright.
_IPV6_EMBEDDING = [
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),
    ipaddress.ip_network("2001::/32"),
]


class GuardRefusal(Exception):
    """The SSRF guard refused a target.

    Deliberately not an OSError: urllib3 would wrap an OSError raised while
    connecting into a generic "Connection aborted" and lose the reason.
    """


class Unresolvable(GuardRefusal):
    pass


class ForbiddenAddress(GuardRefusal):
    pass


def forbidden_reason(address: Address) -> str | None:
    """Why ``address`` may not be an upstream's address, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6 address"
        if any(address in net for net in _IPV6_EMBEDDING):
            return "IPv6 address embedding IPv4"
        if address in _IPV6_ULA:
            return "IPv6 unique local address"
    checks = (
        (address.is_loopback, "loopback address"),
        (address.is_link_local, "link-local address"),
        (address.is_unspecified, "unspecified address"),
        (address.is_multicast, "multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "shared (CGNAT) address"),
        (address.is_private, "private address"),
        (address.is_reserved, "reserved address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for TCP, as the connection would do it."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve: {exc}") from None


def vetted_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """The resolved addresses of ``host``, provided none of them is forbidden."""
    infos = resolve(host, port)
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        reason = forbidden_reason(address)
        if reason:
            raise ForbiddenAddress(f"{host} resolves to a {reason} ({address})")
    return infos
