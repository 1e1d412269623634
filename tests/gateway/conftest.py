"""Fixtures the gateway's tests share: a user with a token, upstreams that let her in, and
the WSGI callable as mod_wsgi calls it."""

from __future__ import annotations

import pytest

from apps.gateway.models import AccessRule, Upstream
from apps.gateway.wsgi import make_application


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def make_upstream(alice):
    """An upstream (internal: on loopback) with a rule that lets alice call it with any method."""

    def make(url: str, name: str = "up", **fields) -> Upstream:
        upstream = Upstream.objects.create(name=name, base_url=url, **{"internal": True, **fields})
        AccessRule.objects.create(upstream=upstream, user=alice, methods=[])
        return upstream

    return make


@pytest.fixture(scope="module")
def application():
    return make_application()
