"""The kinds of alert rule, how denials are grouped, and the API's error codes."""

from __future__ import annotations

from django.db import models


class Kind(models.TextChoices):
    DENIALS = "denials", "N denials for one actor or token within M minutes"
    SENSITIVE_UPSTREAM = "sensitive_upstream", "A request allowed to an upstream marked sensitive"
    VERIFY_FAILED = "verify_failed", "audit_verify found the trail altered"
    SEALING_STALLED = "sealing_stalled", "A completed event waits unsealed longer than the grace + M minutes"


class Grouping(models.TextChoices):
    ACTOR = "actor", "per actor (username)"
    TOKEN = "token", "per API token (key id)"


# Machine-readable codes of the rule validation (400s of /api/alerts/rules/).
GROUPING_REQUIRED = "grouping_required"
GROUPING_NOT_ALLOWED = "grouping_not_allowed"
WINDOW_REQUIRED = "window_required"
