"""Token scopes on the management API (``/api/``), for the views that need them.

A request authenticated by an API token needs the scope its view names for the
method (``read_scope`` for GET, HEAD and OPTIONS, ``write_scope`` otherwise), and a
token limited to some upstreams sees and changes only those upstreams, their rules
and their audit events.  A session (a person in the browsable API) is not a token:
only the user's own permissions apply to it.  Each view keeps its user permission
(``IsAdminUser``, ``IsAuditor``): scopes only ever narrow.

Every refusal here is a 403 ``token_scope``, sent as ``apps.core.signals.api_refused``
(the audit app records it as ``auth.failed`` with that reason), like the
authenticator's refusal of a token without any management scope.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol, runtime_checkable

from django.db.models import QuerySet
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.core.signals import api_refused

TOKEN_SCOPE = "token_scope"  # noqa: S105  (a refusal code, not a secret)


@runtime_checkable
class ScopedCredential(Protocol):
    """What a request's ``auth`` offers when a token authenticated it (the gateway's APIToken)."""

    key_id: str

    def has_scope(self, scope: str) -> bool: ...

    def upstream_ids(self) -> frozenset[int] | None: ...


def request_credential(request: Any) -> ScopedCredential | None:
    """The token that authenticated ``request``, or None (a session, or anonymous)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ScopedCredential) else None


def token_upstream_ids(request: Any) -> frozenset[int] | None:
    """The upstreams the request's token is limited to, or None if it is not limited."""
    token = request_credential(request)
    return None if token is None else token.upstream_ids()


def limit_to_token_upstreams(queryset: QuerySet[Any], request: Any, field: str) -> QuerySet[Any]:
    """``queryset`` narrowed to rows whose ``field`` names one of the token's upstreams."""
    allowed = token_upstream_ids(request)
    return queryset if allowed is None else queryset.filter(**{f"{field}__in": allowed})


def refuse(request: Any, detail: str) -> NoReturn:
    """Record the refusal and answer 403 ``token_scope``."""
    token = request_credential(request)
    api_refused.send(
        sender=refuse, request=request, code=TOKEN_SCOPE, token_key_id=getattr(token, "key_id", ""), status=403
    )
    raise exceptions.PermissionDenied(detail, code=TOKEN_SCOPE)


def check_upstream(request: Any, upstream_id: int | None, what: str) -> None:
    """Refuse unless the token may act on the upstream ``upstream_id`` (None: a new one)."""
    allowed = token_upstream_ids(request)
    if allowed is not None and upstream_id not in allowed:
        refuse(request, f"This token is limited to other upstreams: it may not {what}.")


class TokenScope(BasePermission):
    """The scope the view names for the request's method; for objects that belong to an
    upstream (``view.upstream_of(obj)``), one of the token's upstreams."""

    def has_permission(self, request: Any, view: Any) -> bool:
        token = request_credential(request)
        if token is None:
            return True
        scope = getattr(view, "read_scope" if request.method in SAFE_METHODS else "write_scope", None)
        if scope is not None and not token.has_scope(scope):
            refuse(request, f"This token lacks the scope {scope!r} for this request.")
        return True

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        upstream_of = getattr(view, "upstream_of", None)
        if upstream_of is not None:
            check_upstream(request, upstream_of(obj), "see or change this object")
        return True
