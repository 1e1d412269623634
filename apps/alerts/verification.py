"""A failed verification of the trail (``audit_verify`` by hand or from cron, or a page of
``GET /api/audit/verify``) fires the enabled ``verify_failed`` rules: the receiver of
``apps.audit.signals.verification_failed``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.utils import timezone

from apps.alerts.choices import Kind
from apps.alerts.firing import fire
from apps.alerts.models import Alert, AlertRule

MAX_PROBLEMS = 20  # listed in the alert; the count says how many there were


def on_verification_failed(sender: object, report: Any, **kwargs: object) -> list[Alert]:
    """One alert per rule for each distinct set of problems each UTC day: a trail that stays
    broken is reported again daily, the same verification run twice in a day is not."""
    problems = [{"kind": p.kind, "seq": p.seq, "detail": str(p.detail)[:200]} for p in report.problems]
    digest = hashlib.sha256(json.dumps([(p["kind"], p["seq"]) for p in problems]).encode()).hexdigest()[:16]
    key = f"verify:{timezone.now():%Y-%m-%d}:{report.first_bad_seq}:{digest}"
    detail = {"first_bad_seq": report.first_bad_seq, "problems_count": len(problems),
              "problems": problems[:MAX_PROBLEMS], "events_checked": report.events_checked}  # fmt: skip
    seqs = sorted({p["seq"] for p in problems if p["seq"] is not None})[:MAX_PROBLEMS]
    subject = f"first bad seq {report.first_bad_seq}" if report.first_bad_seq is not None else problems[0]["kind"]
    fired = [
        fire(rule, key, subject=subject, detail=detail, event_ids=seqs)
        for rule in AlertRule.objects.filter(kind=Kind.VERIFY_FAILED, enabled=True)
    ]
    return [alert for alert in fired if alert is not None]
