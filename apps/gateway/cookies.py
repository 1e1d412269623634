"""Cookies an upstream sets, confined to the upstream's part of the gateway.

The browser sees every upstream and the gateway's own pages (the browsable API, the
admin) as one origin.  An upstream's ``Set-Cookie`` is therefore rewritten so that it
can only ever be sent back to ``/gw/<upstream>/``:

- ``Path`` becomes ``/gw/<upstream>`` + the upstream's path (``/gw/<upstream>/`` when
  it gave none or one outside the path space);
- ``Domain`` is removed (it would widen the cookie to the gateway's whole host or its
  parent domain);
- a cookie named like one of the gateway's own (session, CSRF) or with the ``__Host-``
  prefix (which by definition belongs to the whole host, ``Path=/``) is dropped.

Attributes are kept otherwise (``Secure``, ``HttpOnly``, ``SameSite``, ``Max-Age``...).
"""

from __future__ import annotations


def _attribute_name(attribute: str) -> str:
    return attribute.split("=", 1)[0].strip().lower()


def confine(set_cookie: str, upstream_name: str, gateway_cookies: frozenset[str]) -> str | None:
    """The ``Set-Cookie`` value to relay, or None to drop it."""
    pair, *attributes = set_cookie.split(";")
    name = pair.split("=", 1)[0].strip()
    if not name or name in gateway_cookies or name.lower().startswith("__host-"):
        return None
    base = f"/gw/{upstream_name}"
    path = base + "/"
    kept = []
    for attribute in attributes:
        key = _attribute_name(attribute)
        if key == "domain" or not key:
            continue
        if key == "path":
            value = attribute.split("=", 1)[1].strip() if "=" in attribute else ""
            if value.startswith("/") and not {".", ".."} & set(value.split("/")):
                path = base + value
            continue
        kept.append(attribute.strip())
    return "; ".join([pair.strip(), f"Path={path}", *kept])
