"""One evaluation pass: read the new events, apply the enabled rules, check sealing, and
deliver what is due.  Passes run under a MariaDB named lock, so there is one evaluator at a
time across all web hosts (each host's cron starts ``audit_alerts``; they take turns).  The
state is in the database (``EvaluatorState``), never in a process: any host may run the next."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from apps.alerts.delivery import deliver_due
from apps.alerts.evaluation import evaluate
from apps.alerts.models import AlertRule
from apps.alerts.tail import Tail
from apps.core.mariadb.locks import NamedLock
from apps.core.webhooks import Webhook

EVALUATOR_LOCK = NamedLock("alerts")


@dataclass
class Pass:
    events_read: int = 0
    fired: int = 0
    delivered: int = 0
    failed: int = 0


def run_pass(hook: Webhook | None, *, lock_wait: float = 0) -> Pass | None:
    """None when another evaluator holds the lock for longer than ``lock_wait`` seconds."""
    with EVALUATOR_LOCK.holding(wait=lock_wait) as taken:
        if not taken:
            return None
        now = timezone.now()
        tail = Tail.load()
        rows = tail.read(now)
        fired = evaluate(AlertRule.objects.filter(enabled=True), rows, now)
        tail.save()
        result = Pass(events_read=len(rows), fired=len(fired))
        if hook is not None:
            result.delivered, result.failed = deliver_due(hook, timezone.now())
        return result
