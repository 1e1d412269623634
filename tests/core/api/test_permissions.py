"""Every endpoint under ``/api/``, every method, every kind of caller: the permission matrix
(NetBox generates its permission cases the same way).

The endpoints are read from the URL configuration: each URL name under ``/api/`` and the
methods its view answers (a router's list, detail and extra-action routes alike; HEAD and
OPTIONS follow GET and the view's permissions).  What each kind of caller gets is data,
``MATRIX``, keyed by URL name and method.  An endpoint the URLconf has and the matrix does not
list fails ``test_the_matrix_lists_every_api_endpoint_and_method``: a new endpoint cannot go
without its permission tests.

The callers: anonymous; a plain user, an auditor (the ``auditor`` group) and a staff user, each
with a token that has every scope; and a superuser's tokens with and without the scope the
endpoint needs (``apps.gateway.scopes``, ``apps.audit.choices.AUDIT_READ``), which
``apps.core.api.permissions.TokenScope`` checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from apps.audit.choices import AUDIT_READ
from apps.gateway.scopes import POLICY_READ, POLICY_WRITE, SCOPES, TOKENS_READ, TOKENS_WRITE

pytestmark = pytest.mark.django_db

# --- The matrix ---------------------------------------------------------------------------

ANONYMOUS, USER, AUDITOR, STAFF = "anonymous", "user", "auditor", "staff"
CALLERS = (ANONYMOUS, USER, AUDITOR, STAFF)

# An outcome is the status an allowed caller gets, or a refusal's (status, code).
Outcome = int | tuple[int, str]
NOT_AUTHENTICATED = (401, "not_authenticated")
DENIED = (403, "permission_denied")
INVALID_CLIENT = (401, "invalid_client")  # /api/introspect: upstreams authenticate with HTTP Basic

# What a token needs besides a scope name: any management scope at all (the authenticator
# refuses a token without one), or nothing (the view reads no token).
ANY_SCOPE = "any management scope"
NO_TOKEN = "the view reads no token"


@dataclass(frozen=True)
class Access:
    """What each kind of caller gets from one endpoint and method, and the token scope it needs."""

    outcomes: Mapping[str, Outcome]
    scope: str


def staff_only(ok: int, scope: str) -> Access:
    return Access({ANONYMOUS: NOT_AUTHENTICATED, USER: DENIED, AUDITOR: DENIED, STAFF: ok}, scope)


def auditors(ok: int, scope: str) -> Access:
    return Access({ANONYMOUS: NOT_AUTHENTICATED, USER: DENIED, AUDITOR: ok, STAFF: ok}, scope)


def signed_in(scope: str, ok: int = 200, *, auditor: int | None = None) -> Access:
    """Any authenticated user (who sees only what is theirs: the auditor may see a 404)."""
    return Access({ANONYMOUS: NOT_AUTHENTICATED, USER: ok, AUDITOR: auditor or ok, STAFF: ok}, scope)


def everyone(outcome: Outcome, scope: str) -> Access:
    return Access(dict.fromkeys(CALLERS, outcome), scope)


# Writes send an empty body: 400 once the caller is allowed, where the body is required.  The
# objects of detail routes (``objects`` below) belong to the plain user where they have an owner.
MATRIX: dict[str, dict[str, Access]] = {
    "api-root": {"GET": signed_in(ANY_SCOPE)},
    "schema": {"GET": everyone(200, ANY_SCOPE)},
    "swagger-ui": {"GET": everyone(200, ANY_SCOPE)},
    "redoc": {"GET": everyone(200, ANY_SCOPE)},
    "rest_framework:login": {method: everyone(200, NO_TOKEN) for method in ("GET", "POST", "PUT")},
    "rest_framework:logout": {"POST": everyone(200, NO_TOKEN)},
    "core-api:health": {"GET": everyone(200, NO_TOKEN)},
    "core-api:me": {"GET": signed_in(ANY_SCOPE)},
    "gateway-api:introspect": {"POST": everyone(INVALID_CLIENT, NO_TOKEN)},
    "gateway-api:policy-check": {"POST": staff_only(400, POLICY_READ)},
    "gateway-api:upstream-list": {"GET": staff_only(200, POLICY_READ), "POST": staff_only(400, POLICY_WRITE)},
    "gateway-api:upstream-detail": {
        "GET": staff_only(200, POLICY_READ),
        "PUT": staff_only(400, POLICY_WRITE),
        "PATCH": staff_only(200, POLICY_WRITE),
        "DELETE": staff_only(204, POLICY_WRITE),
    },
    "gateway-api:accessrule-list": {"GET": staff_only(200, POLICY_READ), "POST": staff_only(400, POLICY_WRITE)},
    "gateway-api:accessrule-detail": {
        "GET": staff_only(200, POLICY_READ),
        "PUT": staff_only(400, POLICY_WRITE),
        "PATCH": staff_only(200, POLICY_WRITE),
        "DELETE": staff_only(204, POLICY_WRITE),
    },
    "gateway-api:apitoken-list": {"GET": signed_in(TOKENS_READ), "POST": signed_in(TOKENS_WRITE, 400)},
    "gateway-api:apitoken-detail": {"GET": signed_in(TOKENS_READ, auditor=404)},
    "gateway-api:apitoken-revoke": {"POST": signed_in(TOKENS_WRITE, auditor=404)},
    "audit-api:auditevent-list": {"GET": signed_in(AUDIT_READ)},
    "audit-api:auditevent-detail": {"GET": signed_in(AUDIT_READ)},
    "audit-api:auditevent-chain": {"GET": signed_in(AUDIT_READ)},
    "audit-api:auditevent-export": {"GET": signed_in(AUDIT_READ)},
    "audit-api:audit-stats": {"GET": auditors(200, AUDIT_READ)},
    "audit-api:audit-verify": {"GET": auditors(200, AUDIT_READ)},
    # The plain user's event has no evidence: an auditor gets past the permissions to the 404.
    "audit-api:auditevent-evidence": {"GET": auditors(404, AUDIT_READ)},
    "audit-api:auditevent-evidence-body": {"GET": auditors(404, AUDIT_READ)},
    "alerts-api:alert-list": {"GET": auditors(200, AUDIT_READ)},
    "alerts-api:alert-detail": {"GET": auditors(200, AUDIT_READ)},
    # Auditors read the alert rules; administrators change them.
    "alerts-api:alertrule-list": {"GET": auditors(200, AUDIT_READ), "POST": staff_only(400, POLICY_WRITE)},
    "alerts-api:alertrule-detail": {
        "GET": auditors(200, AUDIT_READ),
        "PUT": staff_only(400, POLICY_WRITE),
        "PATCH": staff_only(200, POLICY_WRITE),
        "DELETE": staff_only(204, POLICY_WRITE),
    },
}
# A write scope includes its read scope: a token with only the write scope may read.
INCLUDED_BY = {POLICY_READ: POLICY_WRITE, TOKENS_READ: TOKENS_WRITE}
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})


# --- The URL configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    methods: frozenset[str]
    takes_pk: bool


def url_patterns(patterns: list[Any], route: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    """(route, namespaced name, pattern) for every pattern under ``patterns``."""
    for entry in patterns:
        here = route + str(entry.pattern).lstrip("^")
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from url_patterns(entry.url_patterns, here, inner)
        else:
            yield here, f"{namespace}{entry.name}", entry


def view_methods(pattern: URLPattern) -> frozenset[str]:
    """The methods the pattern's view answers: a viewset route's actions, or a view class's handlers."""
    callback: Any = pattern.callback  # as_view() sets ``actions`` (viewsets) or ``view_class``
    actions = getattr(callback, "actions", None)
    if actions is not None:
        return frozenset(method.upper() for method in actions) - IMPLICIT_METHODS
    view = callback.view_class
    return frozenset(method.upper() for method in view.http_method_names if hasattr(view, method)) - IMPLICIT_METHODS


def api_endpoints() -> dict[str, Endpoint]:
    """Every URL name under ``/api/`` (a format-suffix route is the same endpoint as its plain one)."""
    found: dict[str, Endpoint] = {}
    for route, name, pattern in url_patterns(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        seen = found.get(name, Endpoint(name, frozenset(), False))
        takes_pk = "pk" in pattern.pattern.regex.groupindex
        found[name] = Endpoint(name, seen.methods | view_methods(pattern), seen.takes_pk or takes_pk)
    return found


def test_the_matrix_lists_every_api_endpoint_and_method():
    endpoints = {name: set(endpoint.methods) for name, endpoint in api_endpoints().items()}
    listed = {name: set(rows) for name, rows in MATRIX.items()}
    unlisted = {name: sorted(methods - listed.get(name, set())) for name, methods in endpoints.items()}
    assert {name: methods for name, methods in unlisted.items() if methods} == {}, "add them to MATRIX"
    stale = {name: sorted(methods - endpoints.get(name, set())) for name, methods in listed.items()}
    assert {name: methods for name, methods in stale.items() if methods} == {}, "the URLconf has no such endpoint"


# --- Calling each endpoint ---------------------------------------------------------------------


@pytest.fixture
def users(make_user) -> dict[str, Any]:
    """The callers with an account (staff, not a superuser: the token tests call as the superuser)."""
    return {USER: make_user("plain-user"), AUDITOR: make_user(groups=("auditor",)), STAFF: make_user(staff=True)}


@pytest.fixture
def objects(users, make_event) -> dict[str, int]:
    """The object of each detail route, by its router basename; the token and event are the plain user's."""
    from apps.gateway.models import AccessRule, Upstream
    from apps.gateway.tokens import create_token, default_expiry

    upstream = Upstream.objects.create(name="crm", base_url="http://crm.internal", internal=True)
    rule = AccessRule.objects.create(upstream=upstream, user=users[USER])
    token, _ = create_token(user=users[USER], label="theirs", expires_at=default_expiry())
    event = make_event(actor_id=users[USER].pk, actor_username="plain-user")
    alert_rule, alert = alert_objects()
    return {"upstream": upstream.pk, "accessrule": rule.pk, "apitoken": token.pk, "auditevent": event.pk,
            "alertrule": alert_rule.pk, "alert": alert.pk}  # fmt: skip


def alert_objects() -> tuple[Any, Any]:
    from apps.alerts.models import Alert, AlertRule

    rule = AlertRule.objects.create(name="matrix", kind="sensitive_upstream")
    return rule, Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, subject="s", dedup_key="m")


# Routes that take more than the object's id.
MORE_KWARGS = {"audit-api:auditevent-evidence-body": {"direction": "request"}}


def url_of(name: str, objects: dict[str, int]) -> str:
    if not api_endpoints()[name].takes_pk:
        return reverse(name)
    basename = name.rpartition(":")[2].split("-")[0]
    return reverse(name, kwargs={"pk": objects[basename], **MORE_KWARGS.get(name, {})})


def client_with(plaintext: str | None) -> APIClient:
    api = APIClient()
    if plaintext is not None:
        api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return api


def call(api: APIClient, method: str, url: str) -> Any:
    return getattr(api, method.lower())(url, {}, format="json")


def assert_outcome(response: Any, expected: Outcome) -> None:
    if isinstance(expected, int):
        assert response.status_code == expected, response.content[:500]
        return
    if not response["Content-Type"].startswith("application/json"):
        # The schema views render their refusals as YAML or an HTML page: the status, and the
        # audit event's reason where the test reads it, say which refusal it was.
        assert response.status_code == expected[0], response.content[:500]
        return
    assert (response.status_code, response.json()["code"]) == expected, response.content[:500]
    assert response.json()["request_id"] == response["X-Request-ID"]


CASES = [(name, method, caller) for name, rows in MATRIX.items() for method in rows for caller in CALLERS]


@pytest.mark.parametrize(("name", "method", "caller"), CASES)
def test_each_kind_of_caller_gets_what_the_matrix_says(token_for, users, objects, name, method, caller):
    api = client_with(None if caller == ANONYMOUS else token_for(users[caller]))
    assert_outcome(call(api, method, url_of(name, objects)), MATRIX[name][method].outcomes[caller])


def without(scope: str) -> list[str]:
    """Every scope but ``scope`` and the one that includes it; none at all for ``ANY_SCOPE``."""
    return [] if scope == ANY_SCOPE else [other for other in SCOPES if other not in (scope, INCLUDED_BY.get(scope))]


def alone(scope: str) -> list[list[str]]:
    """The smallest sets of scopes that grant ``scope``."""
    if scope == ANY_SCOPE:
        return [[single] for single in SCOPES]
    if scope == NO_TOKEN:
        return [[]]
    return [[scope], [INCLUDED_BY[scope]]] if scope in INCLUDED_BY else [[scope]]


SCOPED = [
    (name, method) for name, rows in MATRIX.items() for method, access in rows.items() if access.scope != NO_TOKEN
]


@pytest.mark.parametrize(("name", "method"), SCOPED)
def test_a_token_without_the_endpoints_scope_gets_403_token_scope_and_an_audit_event(
    token_for, admin_user, objects, name, method
):
    from apps.audit.models import AuditEvent

    scope = MATRIX[name][method].scope
    plaintext = token_for(admin_user, scopes=without(scope))
    response = call(client_with(plaintext), method, url_of(name, objects))
    assert_outcome(response, (403, "token_scope"))
    event = AuditEvent.objects.get(event_type="auth.failed", request_id=response["X-Request-ID"])
    # A token without any scope is refused by the authenticator, before it names a user.
    actor = "" if scope == ANY_SCOPE else "root-admin"
    assert (event.reason, event.status, event.actor_username) == ("token_scope", 403, actor)
    assert event.token_key_id and event.token_key_id in plaintext


ALONE = [
    (name, method, scopes) for name, rows in MATRIX.items() for method, access in rows.items()
    for scopes in alone(access.scope)
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "scopes"), ALONE)
def test_the_endpoints_scope_alone_is_enough(token_for, admin_user, objects, name, method, scopes):
    response = call(client_with(token_for(admin_user, scopes=scopes)), method, url_of(name, objects))
    assert_outcome(response, MATRIX[name][method].outcomes[STAFF])


REFUSED_GET = [
    name for name, rows in MATRIX.items() if "GET" in rows and not isinstance(rows["GET"].outcomes[ANONYMOUS], int)
]


@pytest.mark.parametrize("name", REFUSED_GET)
@pytest.mark.parametrize("method", sorted(IMPLICIT_METHODS))
def test_head_and_options_refuse_the_anonymous_caller_as_get_does(objects, name, method):
    refusal = MATRIX[name]["GET"].outcomes[ANONYMOUS]
    assert isinstance(refusal, tuple)
    status, _ = refusal
    assert call(client_with(None), method, url_of(name, objects)).status_code == status


# --- Beyond the matrix --------------------------------------------------------------------------


def test_a_malformed_authorization_header_is_a_401(client):
    response = client.get("/api/me/", HTTP_AUTHORIZATION="Token a b")
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")


@pytest.mark.parametrize("scope", ["audit:read", "policy:read", "tokens:read"])
def test_any_scope_may_ask_who_it_is_and_sees_its_scopes(token_for, make_user, scope):
    response = client_with(token_for(make_user(), scopes=[scope])).get("/api/me/")
    assert (response.status_code, response.json()["scopes"]) == (200, [scope])


def test_a_token_without_any_scope_is_refused_by_the_whole_management_api(token_for, admin_user):
    response = client_with(token_for(admin_user, scopes=[])).get("/api/me/")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
