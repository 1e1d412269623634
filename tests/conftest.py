from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.upstream import Upstream

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test starts with empty per-process caches (upstreams, rules, tokens)."""
    from apps.gateway.authentication import token_cache
    from apps.gateway.cache import clear_all

    clear_all()
    token_cache.clear()
    yield


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import Group, User

    def make(username: str | None = None, *, staff: bool = False, groups: tuple[str, ...] = ()) -> User:
        user = User.objects.create_user(username or unique("user"), password="not-used-pw-123", is_staff=staff)
        for name in groups:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        return user

    return make


@pytest.fixture
def token_for(db):
    """A working API token for ``user`` (all upstreams, every management scope, the longest
    lifetime: a token cannot make one that outlives it), one per user."""
    from apps.gateway.scopes import SCOPES
    from apps.gateway.tokens import create_token, default_expiry

    issued: dict[int, str] = {}

    def token(user, **scopes) -> str:
        if user.pk not in issued or scopes:
            options = {"all_upstreams": True, "scopes": SCOPES, **scopes}
            _, plaintext = create_token(user=user, label="test", expires_at=default_expiry(), **options)
            if scopes:
                return plaintext
            issued[user.pk] = plaintext
        return issued[user.pk]

    return token


@pytest.fixture
def client_for(token_for):
    """An API client that authenticates as ``user`` with its token, or anonymously."""
    from rest_framework.test import APIClient

    def client(user=None, scheme: str = "Token") -> APIClient:
        api = APIClient()
        if user is not None:
            api.credentials(HTTP_AUTHORIZATION=f"{scheme} {token_for(user)}")
        return api

    return client


@pytest.fixture
def admin_user(make_user):
    user = make_user("root-admin", staff=True)
    user.is_superuser = True
    user.save(update_fields=("is_superuser",))
    return user


@pytest.fixture
def make_event(db):
    """Write an audit event with plausible defaults; keyword arguments override them."""
    from django.utils import timezone

    from apps.audit.models import AuditEvent

    def make(**fields) -> AuditEvent:
        now = timezone.now()
        values = {
            "occurred_at": now,
            "completed_at": fields.get("recorded_at", now),
            "duration_ms": 1.0,
            "request_id": "r1",
            "method": "GET",
            "path": "/",
            "decision": "allow",
            "reason": "allowed",
            "status": 200,
            "actor_username": "alice",
            "upstream_name": "crm",
        }
        return AuditEvent.objects.create(**{**values, **fields})

    return make
