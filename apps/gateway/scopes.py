"""What an API token may do on the management API (``/api/``): its scopes.

A token's scopes only ever narrow what its user may do: the user's own permissions
(``is_staff``, the ``auditor`` group) still apply, and a session (a person in the
browsable API) is not limited by scopes at all.  A token without any scope may call
the gateway only; ``/api/`` refuses it (403 ``token_scope``).

- ``audit:read``: the audit trail (events, export, stats, verify);
- ``policy:read``: upstreams and access rules, and the policy dry run;
- ``policy:write``: create, change and delete upstreams and rules (includes ``policy:read``);
- ``tokens:read``: list the user's tokens;
- ``tokens:write``: create and revoke tokens (includes ``tokens:read``).

To add a scope: a constant here, its place in ``SCOPES`` (and ``IMPLIED`` if it
includes another), and the views that need it name it in ``read_scope`` / ``write_scope``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

from apps.audit.choices import AUDIT_READ  # the trail's own word for reading it

POLICY_READ = "policy:read"
POLICY_WRITE = "policy:write"
TOKENS_READ = "tokens:read"
TOKENS_WRITE = "tokens:write"

SCOPES = (AUDIT_READ, POLICY_READ, POLICY_WRITE, TOKENS_READ, TOKENS_WRITE)
SCOPE_CHOICES = [
    (AUDIT_READ, "Read the audit trail"),
    (POLICY_READ, "Read upstreams and rules"),
    (POLICY_WRITE, "Manage upstreams and rules"),
    (TOKENS_READ, "List tokens"),
    (TOKENS_WRITE, "Create and revoke tokens"),
]
# A write scope includes the matching read scope, as GitLab's `api` includes `read_api`.
IMPLIED = {POLICY_WRITE: POLICY_READ, TOKENS_WRITE: TOKENS_READ}


def normalise_scopes(values: Any) -> list[str]:
    """Known scope names, deduplicated, in ``SCOPES`` order; ValidationError otherwise."""
    if not isinstance(values, list | tuple):
        raise ValidationError('A list of scopes, e.g. ["audit:read"].', code="invalid_scope")
    unknown = sorted({str(value) for value in values} - set(SCOPES))
    if unknown:
        raise ValidationError(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(SCOPES)}.", code="invalid_scope"
        )
    return [scope for scope in SCOPES if scope in values]


def validate_scopes(values: Any) -> None:
    normalise_scopes(values)


def effective(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes a token has, with those its write scopes include."""
    granted = set(scopes)
    return frozenset(granted | {IMPLIED[scope] for scope in granted if scope in IMPLIED})
