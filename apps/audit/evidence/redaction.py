"""What a captured body and its headers may keep: redaction before anything is stored.

Three layers, in order:

1. Headers: ``ALWAYS_REDACTED_HEADERS``, the upstream's credential header and its configured
   ``evidence_redact_headers`` keep their name and lose their value.
2. Fields: with ``evidence_redact_fields`` configured, a JSON body (``application/json``,
   ``+json``) or a form (``application/x-www-form-urlencoded``) has those keys' values
   replaced at any depth, ignoring letter case, and is written again.  A body that cannot be
   parsed whole (truncated, compressed, another content type, invalid) is *withheld*: what
   should have been redacted is never risked.
3. Secrets: every value the gateway knows that must never be kept (the injected credential,
   the caller's token, the identity key, the signed headers it sent) is replaced wherever it
   appears, raw, JSON-escaped or URL-encoded, in the body and in every header value; a
   truncated body also loses a tail that could be the start of one.

A body with a ``Content-Encoding`` is always withheld: its bytes cannot be searched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()
# Never kept, whatever the upstream says: credentials, sessions, and the gateway's own signed
# headers (the identity assertion, the trace state entry that names the attempt).
ALWAYS_REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-auditgate-identity", "tracestate"}
)


class Withheld:
    """Why a body was not stored (the sealed ``evidence`` says it as ``{"withheld": reason}``)."""

    CONTENT_ENCODED = "content_encoded"
    TRUNCATED = "truncated_before_redaction"
    UNPARSEABLE = "unparseable"
    UNSUPPORTED_TYPE = "unsupported_content_type"
    STORE_FAILED = "store_failed"
    UNRECORDED_ATTEMPT = "unrecorded_attempt"


@dataclass(frozen=True)
class Redaction:
    """What one exchange redacts: field names and header names (lower case) and secret values."""

    fields: frozenset[str] = frozenset()
    headers: frozenset[str] = ALWAYS_REDACTED_HEADERS
    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, fields: Iterable[str], headers: Iterable[str], secrets: Iterable[str]) -> Redaction:
        return cls(
            fields=frozenset(name.lower() for name in fields),
            headers=ALWAYS_REDACTED_HEADERS | {name.lower() for name in headers if name},
        ).with_secrets(secrets)

    def with_secrets(self, secrets: Iterable[str]) -> Redaction:
        """These rules, also redacting ``secrets`` (longest first, so no shorter one cuts a longer one)."""
        return replace(self, secrets=tuple(sorted({s for s in (*self.secrets, *secrets) if s}, key=len, reverse=True)))

    def text_forms(self) -> tuple[str, ...]:
        """Each secret as it can appear in text: raw, JSON-escaped, URL-encoded (longest first)."""
        forms: set[str] = set()
        for secret in self.secrets:
            forms |= {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
            forms |= {quote(secret, safe=""), quote_plus(secret)}
        return tuple(sorted((f for f in forms if f), key=len, reverse=True))


@dataclass
class Redacted:
    """A body as it may be stored (``body`` None: withheld, ``withheld`` says why)."""

    body: bytes | None
    redacted: set[str] = field(default_factory=set)
    withheld: str = ""


def header_value(headers: Iterable[Sequence[str]], name: str) -> str:
    """The first value of header ``name`` (lower case) among ``(name, value)`` pairs; empty if none."""
    return next((value for key, value in headers if key.lower() == name), "")


def redact_headers(headers: Iterable[tuple[str, str]], rules: Redaction) -> tuple[list[list[str]], set[str]]:
    """The headers as stored (``[name, value]`` pairs, in order) and what was redacted."""
    forms, kept, redacted = rules.text_forms(), [], set()
    for name, value in headers:
        if name.lower() in rules.headers:
            kept.append([name, REDACTED])
            redacted.add(f"header:{name.lower()}")
            continue
        scrubbed = value
        for form in forms:
            scrubbed = scrubbed.replace(form, REDACTED)
        if scrubbed != value:
            redacted.add("secret")
        kept.append([name, scrubbed])
    return kept, redacted


def redact_body(data: bytes, headers: Iterable[tuple[str, str]], *, truncated: bool, rules: Redaction) -> Redacted:
    """``data`` (the kept prefix when ``truncated``) as it may be stored, or withheld."""
    headers = list(headers)
    encoding = header_value(headers, "content-encoding").strip().lower()
    if data and encoding not in ("", "identity"):
        return Redacted(None, withheld=Withheld.CONTENT_ENCODED)
    result = Redacted(data)
    if rules.fields and data:
        result = _redact_fields(data, header_value(headers, "content-type"), truncated=truncated, rules=rules)
        if result.body is None:
            return result
    body, found = _scrub_secrets(result.body or b"", rules, truncated=truncated)
    if found:
        result.redacted.add("secret")
    result.body = body
    return result


def _redact_fields(data: bytes, content_type: str, *, truncated: bool, rules: Redaction) -> Redacted:
    kind = content_type.split(";", 1)[0].strip().lower()
    is_json = kind == "application/json" or kind.endswith("+json")
    if not is_json and kind != "application/x-www-form-urlencoded":
        return Redacted(None, withheld=Withheld.UNSUPPORTED_TYPE)
    if truncated:
        return Redacted(None, withheld=Withheld.TRUNCATED)
    try:
        body, found = (_redact_json if is_json else _redact_form)(data, rules.fields)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return Redacted(None, withheld=Withheld.UNPARSEABLE)
    return Redacted(body, redacted={f"field:{name}" for name in found})


def _redact_json(data: bytes, fields: frozenset[str]) -> tuple[bytes, set[str]]:
    found: set[str] = set()

    def redact_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        kept = {}
        for key, value in pairs:  # every pair, duplicate keys too
            if key.lower() in fields:
                found.add(key.lower())
                value = REDACTED
            kept[key] = value
        return kept

    value = json.loads(data, object_pairs_hook=redact_pairs)
    if not found:
        return data, found  # unchanged: the stored digest is the trail's own
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), found


def _redact_form(data: bytes, fields: frozenset[str]) -> tuple[bytes, set[str]]:
    pairs = parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict")
    found = {key.lower() for key, _ in pairs if key.lower() in fields}
    if not found:
        return data, found
    return urlencode([(key, REDACTED if key.lower() in fields else value) for key, value in pairs]).encode(), found


def _scrub_secrets(data: bytes, rules: Redaction, *, truncated: bool) -> tuple[bytes, bool]:
    forms = [form.encode() for form in rules.text_forms()]
    found = False
    for form in forms:
        if form in data:
            data, found = data.replace(form, _REDACTED_BYTES), True
    cut = _secret_start_at_end(data, forms) if truncated else 0
    if cut:  # the cap may have split a secret: keep none of it
        data, found = data[:-cut], True
    return data, found


def _secret_start_at_end(data: bytes, forms: list[bytes]) -> int:
    """How many bytes at the end of ``data`` could be the beginning of a secret (0: none)."""
    longest = 0
    for form in forms:
        for length in range(min(len(form) - 1, len(data)), longest, -1):
            if data.endswith(form[:length]):
                longest = length
                break
    return longest
