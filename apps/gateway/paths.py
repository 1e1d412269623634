"""Path handling shared by the policy (matching) and the proxy (forwarding).

The gateway works from the raw request URI, not from Apache's PATH_INFO: Apache
has already decoded and merged ``..`` segments there, which would hide what the
client really sent.  Percent-escapes are decoded exactly once; anything that
could be read differently by the gateway and the upstream is refused.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes


class InvalidPath(ValueError):
    pass


# RFC 3986 pchar characters that may stay unescaped when the path is re-encoded.
_SAFE = "/:@!$&'()*+,;=-._~"
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)


def gateway_suffix(request_uri: str, upstream_name: str) -> str:
    """The raw (still percent-encoded) path after ``/gw/<upstream>``, without the query."""
    path = request_uri.split("?", 1)[0]
    prefix = f"/gw/{upstream_name}"
    if path != prefix and not path.startswith(prefix + "/"):
        raise InvalidPath("the request URI does not start with the gateway prefix")
    return path[len(prefix) :] or "/"


def normalise(raw: str) -> str:
    """Decode ``raw`` once and return the canonical path rules are matched on and that is forwarded."""
    if "\\" in raw:
        raise InvalidPath("backslash in path")
    if _ENCODED_SEPARATOR.search(raw):
        raise InvalidPath("encoded slash or backslash in path")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath("path is not valid UTF-8") from None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise InvalidPath("control characters in path")
    if "%" in path:
        raise InvalidPath("percent sign after decoding (double encoding)")
    if "\\" in path:
        raise InvalidPath("backslash in path")
    path = "/" + path.lstrip("/")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidPath("dot segments in path")
    return re.sub("/{2,}", "/", path)


def matches_prefix(path: str, prefix: str) -> bool:
    """Prefix match on segment boundaries: ``/api`` covers ``/api`` and ``/api/x``, not ``/apix``."""
    if prefix in ("", "/"):
        return True
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` matches within one segment, ``**`` across segments, ``?`` one character of a segment."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches_glob(path: str, pattern: str) -> bool:
    return glob_regex(pattern).match(path) is not None


def encode(path: str) -> str:
    return quote(path, safe=_SAFE)
