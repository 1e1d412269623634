"""Fixed vocabularies of the audit trail.

The trail must not depend on what it audits: the codes other apps record (the
gateway's refusal reasons and upstream errors) arrive as data, through ``declare()``,
which those apps call when they are ready.  The admin's filters read them from here.
"""

from django.db import models


class Decision(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"


# The error of an attempt whose process died before it recorded its outcome (audit_reconcile).
INTERRUPTED = "interrupted"
# The token scope that reads the trail (events, export, stats, verify).
AUDIT_READ = "audit:read"


class ProblemKind(models.TextChoices):
    """What ``audit_verify`` can find wrong with the trail or an archive."""

    FORK = "fork"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    DELETED = "deleted"
    INSERTED = "inserted"
    ALTERED = "altered"
    CHECKPOINT_MISSING = "checkpoint_missing"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    TOO_MANY_PROBLEMS = "too_many_problems"
    INVALID_LINE = "invalid_line"
    UNEXPECTED = "unexpected"
    OUT_OF_ORDER = "out_of_order"
    INCOMPLETE = "incomplete"
    # A sealed event's captured body (apps.audit.evidence): no blob under its digest, or a blob
    # whose content no longer hashes to it.
    EVIDENCE_MISSING = "evidence_missing"
    EVIDENCE_MISMATCH = "evidence_mismatch"


# Codes recorded in the ``reason`` and ``error`` columns, declared by the apps that record them.
RECORDED_REASONS: set[str] = set()
RECORDED_ERRORS: set[str] = {INTERRUPTED}


def declare(*, reasons: object = (), errors: object = ()) -> None:
    """Make ``reasons`` and ``errors`` known to the trail's filters (called from AppConfig.ready)."""
    RECORDED_REASONS.update(reasons)  # type: ignore[arg-type]
    RECORDED_ERRORS.update(errors)  # type: ignore[arg-type]
