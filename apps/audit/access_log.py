"""Joining Apache's access log to the audit trail: which requests Django never saw.

Apache logs every request with mod_unique_id's id (the ``auditgate`` LogFormat in
apache/vhost.conf), and the gateway records every request it handles under the same id.
A ``/gw/`` line without an audit event is a request refused before Django ran: a full
listen backlog (503 after connect-timeout), a queue timeout (504 at pickup), a daemon
that died or restarted under it, or Apache's own refusals (a malformed request line or
header, a URI too long, a transfer coding besides chunked...: README, "What Apache answers
itself").  A request is matched to a prefix by the path Apache routes it on, not by the
target as sent: ``//gw/x``, ``/%67w/x`` and ``https://host/gw/x`` are gateway requests too.
A line without a request id (written before the ErrorDocuments gave every answer one, or
a connection closed before its request line ended) is listed too, never skipped.

logrotate renames the log daily (``.1``, then ``.2.gz``...): a window that spans a
rotation is read from the log and its rotations, oldest first.
"""

from __future__ import annotations

import gzip
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from apps.audit.models import AuditEvent

# combined + %D (microseconds) + %{UNIQUE_ID}e; quoted fields may contain \" escapes.
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    rf"^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] {_QUOTED} (?P<status>\d{{3}}) \S+ {_QUOTED} {_QUOTED} "
    r"(?P<micros>\d+) (?P<request_id>\S+)$"
)
_CHUNK = 1000
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")
# AllowEncodedSlashes NoDecode: Apache routes on the path with %2F still encoded.
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


@dataclass(frozen=True)
class LoggedRequest:
    time: datetime
    method: str
    path: str
    status: int
    duration_ms: float
    request_id: str | None  # None when Apache logged none ("-")


def with_rotations(log: Path, since: datetime | None = None) -> list[Path]:
    """``log`` and its rotations (``log.1``, ``log.2.gz``, ...), oldest first.  With ``since``,
    rotations last written before it are left out: a file's modification time is never earlier
    than its last line (copying, compressing and renaming only make it later)."""
    rotations = []
    for candidate in log.parent.glob(f"{log.name}.*"):
        number = candidate.name.removeprefix(f"{log.name}.").removesuffix(".gz")
        if number.isdigit():
            rotations.append((int(number), candidate))
    files = [path for _, path in sorted(rotations, reverse=True)]
    if since is not None:
        files = [path for path in files if datetime.fromtimestamp(path.stat().st_mtime, UTC) >= since]
    return [*files, log]


def read_lines(files: Iterable[Path]) -> Iterator[str]:
    """The lines of each file in turn, gzip-compressed or not."""
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
            yield from lines


def parse(lines: Iterable[str]) -> Iterator[LoggedRequest]:
    """The lines in the auditgate format; lines in other formats are skipped."""
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if not match:
            continue
        method, _, rest = match.group(3).partition(" ")
        yield LoggedRequest(
            time=datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z"),
            method=method,
            path=rest.rsplit(" ", 1)[0],
            status=int(match["status"]),
            duration_ms=int(match["micros"]) / 1000,
            request_id=None if match["request_id"] == "-" else match["request_id"],
        )


def routed_path(target: str) -> str:
    """The path Apache routes a request target on (``<Location>``, ``WSGIScriptAlias``): no
    scheme and host (absolute form), query or fragment; %-escapes decoded except %2F; repeated
    slashes merged (MergeSlashes) and dot segments removed."""
    path = _QUERY_OR_FRAGMENT.split(_ABSOLUTE_FORM.sub("", target, count=1), maxsplit=1)[0]
    path = "%2F".join(unquote(part, errors="replace") for part in _ENCODED_SLASH.split(path))
    path = re.sub("/{2,}", "/", path)
    if not path.startswith("/"):
        return path
    normal = posixpath.normpath(path)
    ends_in_a_directory = path.endswith(("/", "/.", "/..")) and normal != "/"
    return f"{normal}/" if ends_in_a_directory else normal


def recorded_ids(request_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(request_ids), _CHUNK):
        chunk = request_ids[start : start + _CHUNK]
        found.update(AuditEvent.objects.filter(request_id__in=chunk).values_list("request_id", flat=True))
    return found


def unseen_by_django(logged: Iterable[LoggedRequest], prefix: str | tuple[str, ...] = "/gw/",
                     since: datetime | None = None) -> list[LoggedRequest]:  # fmt: skip
    """The logged requests routed under ``prefix`` (from ``since`` on) that have no audit event."""
    candidates = [r for r in logged if routed_path(r.path).startswith(prefix) and (since is None or r.time >= since)]
    seen = recorded_ids(sorted({r.request_id for r in candidates if r.request_id}))
    return [r for r in candidates if r.request_id not in seen]


def summary(unseen: list[LoggedRequest]) -> dict[str, object]:
    return {
        "unseen": len(unseen),
        "by_status": dict(sorted(Counter(str(r.status) for r in unseen).items())),
        "requests": [_as_dict(r) for r in unseen],
    }


def _as_dict(r: LoggedRequest) -> dict[str, object]:
    return {"time": r.time.isoformat(), "request_id": r.request_id, "status": r.status, "method": r.method,
            "path": r.path, "duration_ms": r.duration_ms}  # fmt: skip
