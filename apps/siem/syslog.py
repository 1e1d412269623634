"""RFC 5424 syslog messages for the stream, in RFC 6587 / RFC 5425 octet-counted frames.

    <PRI>1 TIMESTAMP HOSTNAME auditgate PROCID MSGID [auditgate@32473 seq="..." ...] BOM{json}

* PRI: the configured facility (default ``authpriv``: the trail names users, addresses and
  paths, which Debian's rsyslog keeps in the restricted ``auth.log``, out of the world-readable
  ``syslog``) and a severity: ``warning`` for refusals and authentication failures, ``notice``
  for the rest of the trail, ``info`` for checkpoints.
* TIMESTAMP: when the event occurred (UTC, microseconds, RFC 3339); a checkpoint's sealing time.
* MSGID: the event type (``gateway.request``...), or ``checkpoint``.
* STRUCTURED-DATA: ``auditgate@32473``, under the enterprise number RFC 5612 reserves for
  documentation (32473): auditgate has no number of its own; a SIEM can route on it.
* MSG: a UTF-8 BOM, then the JSON line (``apps.siem.lines``): the whole event, as exported.
"""

from __future__ import annotations

from apps.siem.lines import CHECKPOINT, Line

SD_ID = "auditgate@32473"
APP_NAME = "auditgate"
BOM = b"\xef\xbb\xbf"
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
WARNING, NOTICE, INFO = 4, 5, 6
_WARNING_TYPES = frozenset({"gateway.denied", "auth.failed"})
# The SD-PARAMs of an event: the fields a SIEM filters on first.
_EVENT_PARAMS = ("event_type", "decision", "reason", "status", "actor_username", "upstream_name", "request_id")


def severity(line: Line) -> int:
    if line.kind == CHECKPOINT:
        return INFO
    if line.event_type in _WARNING_TYPES or line.fields.get("decision") == "deny":
        return WARNING
    return NOTICE


def message(line: Line, *, facility: int, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message (without its frame)."""
    pri = facility * 8 + severity(line)
    header = " ".join(
        (f"<{pri}>1", _timestamp(line), _header_field(hostname, 255), APP_NAME, str(procid),
         _header_field(line.event_type, 32))
    )  # fmt: skip
    return f"{header} {structured_data(line)} ".encode() + BOM + line.body


def frame(message: bytes) -> bytes:
    """Octet-counting (RFC 6587 3.4.1, RFC 5425 4.3): ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


def structured_data(line: Line) -> str:
    if line.kind == CHECKPOINT:
        params = {"seq": line.seq, "first_seq": line.fields["first_seq"], "head_hash": line.fields["head_hash"]}
    else:
        params = {"seq": line.seq, **{k: line.fields.get(k) for k in _EVENT_PARAMS}}
    shown = " ".join(f'{name}="{_param_value(value)}"' for name, value in params.items() if value not in (None, ""))
    return f"[{SD_ID} {shown}]"


def _timestamp(line: Line) -> str:
    value = line.fields.get("sealed_at" if line.kind == CHECKPOINT else "occurred_at")
    if not isinstance(value, str) or not value:
        return "-"
    return value.replace("+00:00", "Z")


def _header_field(value: str, limit: int) -> str:
    """PRINTUSASCII (33..126) only, at most ``limit`` characters; "-" (NILVALUE) if nothing is left."""
    kept = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return kept or "-"


def _param_value(value: object) -> str:
    """PARAM-VALUE: UTF-8, with '"', '\\' and ']' escaped (RFC 5424 6.3.3)."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
