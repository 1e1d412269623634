"""The rules, applied to the events the tail read (and, for sealing, to the trail's state).

Each rule kind is one function; each alert it fires carries a dedup key naming exactly what
it fired for, so evaluating the same events again never fires twice:

* denials: ``threshold`` denials of one subject (actor or token) within the window ending at a
  denial; at most one alert per subject per window-long bucket of time while it goes on;
* sensitive_upstream: at the attempt's insert (its outcome is not waited for), one per
  request, or with a window the first request of each caller in each window;
* sealing_stalled: one per stall episode (see ``sealing_stalled``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings

from apps.alerts.choices import Grouping, Kind
from apps.alerts.firing import already_fired, fire
from apps.alerts.models import Alert, AlertRule, EvaluatorState
from apps.alerts.tail import Row
from apps.audit import events
from apps.audit.choices import Decision
from apps.audit.models import AuditEvent, AuditSeal
from apps.gateway.models import Upstream

ATTEMPTS = (events.GATEWAY_REQUEST, events.GATEWAY_WEBSOCKET)
# How many of the oldest unsealed events the stall check looks at: a bounded read however far
# behind the sealer is (a lower id committing late is among the first anyway).
STALL_SAMPLE = 1000


def evaluate(rules: Iterable[AlertRule], rows: list[Row], now: datetime) -> list[Alert]:
    fired: list[Alert | None] = []
    sensitive: frozenset[int] | None = None
    for rule in rules:
        if rule.kind == Kind.DENIALS:
            fired += denials(rule, rows)
        elif rule.kind == Kind.SENSITIVE_UPSTREAM:
            if sensitive is None:
                sensitive = frozenset(Upstream.objects.filter(sensitive=True).values_list("id", flat=True))
            fired += sensitive_upstream(rule, rows, sensitive)
        elif rule.kind == Kind.SEALING_STALLED:
            fired.append(sealing_stalled(rule, now))
    return [alert for alert in fired if alert is not None]


def _bucket(moment: datetime, minutes: int) -> int:
    return int(moment.timestamp() // (minutes * 60))


def denials(rule: AlertRule, rows: list[Row]) -> list[Alert | None]:
    column = "actor_username" if rule.grouping == Grouping.ACTOR else "token_key_id"
    window = timedelta(minutes=rule.window_minutes)
    fired: list[Alert | None] = []
    done: set[str] = set()  # keys fired (now or before) in this pass: a flood costs one lookup per key
    for row in sorted(rows, key=lambda r: (r["occurred_at"], r["id"])):
        subject = row[column]
        if row["decision"] != Decision.DENY or not subject:
            continue
        key = f"denials:{rule.grouping}:{subject}:{_bucket(row['occurred_at'], rule.window_minutes)}"
        if key in done or already_fired(rule, key):
            done.add(key)
            continue
        # The index (column, occurred_at) narrows; at most ``threshold`` rows are read.
        recent = list(
            AuditEvent.objects.filter(**{column: subject}, decision=Decision.DENY,
                                      occurred_at__gt=row["occurred_at"] - window, occurred_at__lte=row["occurred_at"])
            .order_by("-occurred_at", "-id").values_list("id", flat=True)[: rule.threshold]
        )  # fmt: skip
        if len(recent) < rule.threshold:
            continue
        detail = {
            "grouping": rule.grouping, column: subject, "denials": len(recent), "threshold": rule.threshold,
            "window_minutes": rule.window_minutes, "last_reason": row["reason"], "last_upstream": row["upstream_name"],
            "last_at": row["occurred_at"].isoformat(),
        }  # fmt: skip
        fired.append(fire(rule, key, subject=f"{rule.grouping} {subject}", detail=detail, event_ids=sorted(recent)))
        done.add(key)
    return fired


def sensitive_upstream(rule: AlertRule, rows: list[Row], sensitive: frozenset[int]) -> list[Alert | None]:
    fired: list[Alert | None] = []
    for row in rows:
        allowed_attempt = row["event_type"] in ATTEMPTS and row["decision"] == Decision.ALLOW
        if not allowed_attempt or row["upstream_id"] not in sensitive:
            continue
        caller = row["actor_username"] or row["token_key_id"] or str(row["source_ip"] or "")
        if rule.window_minutes:
            key = f"sensitive:{row['upstream_id']}:{caller}:{_bucket(row['occurred_at'], rule.window_minutes)}"
        else:
            key = f"sensitive:{row['id']}"
        detail = {
            "upstream": row["upstream_name"], "upstream_id": row["upstream_id"], "actor": row["actor_username"],
            "token_key_id": row["token_key_id"], "source_ip": row["source_ip"], "method": row["method"],
            "path": row["path"][:200], "request_id": row["request_id"], "at": row["occurred_at"].isoformat(),
        }  # fmt: skip
        subject = f"{caller or '(anonymous)'} on {row['upstream_name']}"
        fired.append(fire(rule, key, subject=subject, detail=detail, event_ids=[row["id"]]))
    return fired


def sealing_stalled(rule: AlertRule, now: datetime) -> Alert | None:
    """Stalled: the oldest completed event not sealed yet became sealable (completed and
    recorded) longer ago than the seal grace + the rule's bound.  An episode opens at the first
    stalled check (one alert, keyed by that event) and closes at the first check that is not."""
    state, _ = EvaluatorState.objects.get_or_create(name=f"sealing_stall:{rule.pk}")
    oldest = _oldest_unsealed()
    bound = timedelta(seconds=settings.AUDIT_SEAL_GRACE_SECONDS, minutes=rule.window_minutes)
    if oldest is None or oldest[1] > now - bound:
        if state.data:
            state.data = {}
            state.save(update_fields=("data", "updated_at"))
        return None
    if state.data.get("episode"):
        return None
    seq, since = oldest
    state.data = {"episode": seq, "since": since.isoformat()}
    state.save(update_fields=("data", "updated_at"))
    last = AuditSeal.objects.order_by("-last_seq").values_list("last_seq", flat=True).first()
    detail = {"oldest_unsealed_seq": seq, "sealable_since": since.isoformat(), "last_sealed_seq": last,
              "bound_minutes": rule.window_minutes, "grace_seconds": settings.AUDIT_SEAL_GRACE_SECONDS}  # fmt: skip
    return fire(rule, f"stall:{seq}", subject=f"seq {seq} unsealed since {since:%Y-%m-%d %H:%M:%S}Z",
                detail=detail, event_ids=[seq])  # fmt: skip


def _oldest_unsealed() -> tuple[int, datetime] | None:
    last = AuditSeal.objects.order_by("-last_seq").values_list("last_seq", flat=True).first() or 0
    sample = AuditEvent.objects.filter(id__gt=last, completed_at__isnull=False).order_by("id")
    candidates: list[tuple[int, datetime]] = []
    for seq, completed, recorded in sample.values_list("id", "completed_at", "recorded_at")[:STALL_SAMPLE]:
        assert completed is not None  # filtered above
        candidates.append((seq, max(completed, recorded)))
    return min(candidates, key=lambda c: c[1]) if candidates else None
