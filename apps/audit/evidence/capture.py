"""One exchange's capture: what the gateway hands the relay, and what the outcome seals.

The gateway (``apps.gateway.capturing``) makes a ``Capture`` only for an exchange whose
upstream or rule captures evidence; its counts replace the relay's plain ``BodyCount`` and keep
at most ``cap`` bytes per direction.  ``store`` runs once, when the exchange ends (the
outcome's ``finish``, in the request's thread, before the outcome is spooled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.audit.evidence import storage
from apps.audit.evidence.redaction import Redaction, Withheld, header_value, redact_body, redact_headers
from apps.audit.recording import CapturingCount

REQUEST, RESPONSE = "request", "response"
DIRECTIONS = (REQUEST, RESPONSE)


@dataclass
class Side:
    """One direction: its body as it streamed, and its headers (None: there was no answer)."""

    count: CapturingCount
    headers: list[tuple[str, str]] | None = None


@dataclass
class Capture:
    """Both directions of one exchange, with what they redact and how much of each is kept."""

    rules: Redaction
    cap: int
    request: Side = field(init=False)
    response: Side = field(init=False)

    def __post_init__(self) -> None:
        self.request, self.response = Side(CapturingCount(self.cap)), Side(CapturingCount(self.cap))

    def store(self, event_id: int | None) -> dict[str, Any]:
        """Redact, store the bodies (blobs and links committed), and return the ``evidence`` to seal."""
        sides = {d: s for d, s in ((REQUEST, self.request), (RESPONSE, self.response)) if s.headers is not None}
        prepared = {direction: self._record(side) for direction, side in sides.items()}
        records = {direction: record for direction, (record, _) in prepared.items()}
        bodies = {direction: body for direction, (_, body) in prepared.items() if body}
        if event_id is None:  # a fail-open attempt that was never recorded: nothing may point at it
            return {direction: {"withheld": Withheld.UNRECORDED_ATTEMPT} for direction in records}
        if not storage.save(event_id, bodies):
            return {direction: {"withheld": Withheld.STORE_FAILED} for direction in records}
        return records

    def _record(self, side: Side) -> tuple[dict[str, Any], bytes]:
        """What the event seals of one direction, and the bytes to store (empty: none)."""
        headers = side.headers or []
        kept_headers, redacted = redact_headers(headers, self.rules)
        body = redact_body(bytes(side.count.kept), headers, truncated=side.count.truncated, rules=self.rules)
        redacted |= body.redacted
        common = {"redacted": sorted(redacted), "headers": kept_headers,
                  "content_type": header_value(kept_headers, "content-type")}  # fmt: skip
        if body.body is None:
            return {"withheld": body.withheld, **common}, b""
        record = {
            "sha256": storage.digest(body.body) if body.body else "",
            "bytes": len(body.body),
            "truncated": side.count.truncated,
            **common,
        }
        return record, body.body
