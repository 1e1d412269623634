"""Who is calling: the client address as established through trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.TRUSTED_PROXIES)


def forwarded_for(meta: dict[str, Any]) -> str:
    """The X-Forwarded-For to send: the caller's chain only when the peer is a trusted proxy."""
    peer = meta.get("REMOTE_ADDR", "")
    earlier = meta.get("HTTP_X_FORWARDED_FOR", "")
    if earlier and _trusted(peer):
        return f"{earlier}, {peer}"
    return peer


def client_ip(meta: dict[str, Any]) -> str:
    """The client as established through trusted proxies: the right-most untrusted address."""
    chain = [hop.strip() for hop in forwarded_for(meta).split(",") if hop.strip()]
    for hop in reversed(chain):
        if not _trusted(hop):
            return hop
    return chain[0] if chain else ""
