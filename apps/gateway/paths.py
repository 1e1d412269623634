"""Path handling shared by the policy (matching) and the proxy (forwarding)."""

from __future__ import annotations

from urllib.parse import quote


class InvalidPath(ValueError):
    pass


# RFC 3986 pchar characters that may stay unescaped when the path is re-encoded.
_SAFE = "/:@!$&'()*+,;=-._~"


def normalise(path: str) -> str:
    """The canonical form that rules are matched on and that is forwarded.

    ``path`` is already percent-decoded (WSGI's PATH_INFO).  Dot segments are
    refused rather than resolved: a client that sends them is either confused or
    probing for a way around a prefix rule, and both deserve a clear 400.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise InvalidPath("control characters in path")
    path = "/" + path.lstrip("/")
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        raise InvalidPath("dot segments in path")
    while "//" in path:
        path = path.replace("//", "/")
    return path


def matches_prefix(path: str, prefix: str) -> bool:
    """Prefix match on segment boundaries: ``/api`` covers ``/api`` and ``/api/x``, not ``/apix``."""
    if prefix in ("", "/"):
        return True
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def encode(path: str) -> str:
    return quote(path, safe=_SAFE)
