"""Path handling shared by the policy (matching) and the proxy (forwarding).

The gateway works from the raw request URI, not from Apache's PATH_INFO: Apache
has already decoded and merged ``..`` segments there, which would hide what the
client really sent.  Percent-escapes are decoded exactly once; anything that
could be read differently by the gateway and the upstream is refused.
"""

from __future__ import annotations

import re
import unicodedata
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
    _refuse_what_upstreams_read_differently(path)
    return re.sub("/{2,}", "/", path)


# Look-alikes that Windows' "best fit" conversion (IIS, .NET) turns into / \ or . although
# Unicode's NFKC keeps them apart from ASCII.
_BEST_FIT_LOOKALIKES = frozenset("\u2215\u2044\u29f8\u2216\u29f5\u29f9\ufe68\u2027\u00b7\u02d9\u0338")


def _reads_as_ascii(ch: str) -> bool:
    return ch in _BEST_FIT_LOOKALIKES or any(c.isascii() for c in unicodedata.normalize("NFKC", ch))


def _refuse_what_upstreams_read_differently(path: str) -> None:
    """Forms that a policy on the path cannot judge, because common upstreams read them as
    another path: the rule sees ``/admin;x`` or ``/admin.`` where the upstream serves ``/admin``.

    - ``;``: path parameters, which Tomcat and Jetty strip (``/..;/``, ``;jsessionid=``);
    - a segment ending in a dot or a space, or holding ``::$`` (an NTFS stream): Windows
      servers drop the dot or space and serve the file itself;
    - a non-ASCII character that Unicode compatibility (NFKC) or Windows' best-fit mapping
      turn into ASCII: U+FF0F fullwidth solidus, U+FF0E fullwidth full stop, U+2024 one dot
      leader, fullwidth letters...
    Letter case is not refused: a rule can match it with ``case_insensitive``.
    """
    if ";" in path:
        raise InvalidPath("semicolon in path (path parameters)")
    for segment in path.split("/"):
        if segment.endswith((".", " ")):
            raise InvalidPath("path segment ending in a dot or a space")
        if "::$" in segment:
            raise InvalidPath("NTFS stream name in path")
    if not path.isascii() and any(_reads_as_ascii(ch) for ch in path if not ch.isascii()):
        raise InvalidPath("a character that upstreams may read as ASCII (compatibility form)")


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


_DOT_ESCAPE = re.compile("%2e", re.IGNORECASE)


def as_browsers_read(url: str) -> str:
    """``url`` with what browsers read as dots and slashes written as such (WHATWG URL parsing):
    ``%2e`` is a dot and a backslash is a slash, before the fragment."""
    main, hash_, fragment = url.partition("#")
    return _DOT_ESCAPE.sub(".", main.replace("\\", "/")) + hash_ + fragment


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 (``urljoin`` leaves an absolute reference's dot segments in place)."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def encode(path: str) -> str:
    return quote(path, safe=_SAFE)
