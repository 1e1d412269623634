"""Chunked request bodies (issue 14, goal 5): streamed to the upstream as they arrive, with the
upstream's max_request_bytes enforced while they stream, through the WSGI callable as mod_wsgi
calls it (WSGIChunkedRequest On: no CONTENT_LENGTH, wsgi.input read to its end)."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from apps.audit.models import AuditEvent
from apps.gateway.models import AccessRule, Upstream
from tests.gateway.test_wsgi_application import serve

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo(upstream_server, alice):
    upstream = Upstream.objects.create(name="echo", base_url=upstream_server.url, internal=True,
                                       max_request_bytes=100_000)  # fmt: skip
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["POST"])
    return upstream


def post_chunked(application, path: str, body: bytes, token: str) -> tuple[str, bytes]:
    """As mod_wsgi passes a chunked body: no CONTENT_LENGTH, wsgi.input the decoded bytes."""
    status, _, content = serve(application, path, "POST", HTTP_AUTHORIZATION=f"Token {token}",
                               HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": io.BytesIO(body)})  # fmt: skip
    return status, content


def test_a_chunked_body_is_streamed_to_the_upstream_whole_and_recorded(application, echo, alice, token_for):
    payload = os.urandom(50_000)
    status, content = post_chunked(application, "/gw/echo/upload", payload, token_for(alice))
    assert status.startswith("200"), content[:300]
    seen = json.loads(content)
    assert (seen["body_length"], seen["body_sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert seen["headers"]["transfer-encoding"] == "chunked"
    event = AuditEvent.objects.get(event_type="gateway.request")
    assert (event.request_bytes, event.request_sha256) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_a_chunked_body_over_the_upstreams_limit_is_cut_there_with_413(application, echo, alice, token_for):
    status, content = post_chunked(application, "/gw/echo/upload", os.urandom(300_000), token_for(alice))
    assert status.startswith("413"), content[:300]
    assert json.loads(content)["code"] == "request_too_large"
    event = AuditEvent.objects.get(event_type="gateway.request")
    assert (event.status, event.error) == (413, "request_too_large")
    assert 100_000 < event.request_bytes < 300_000  # read only until the limit was passed


def test_a_transfer_coding_other_than_chunked_is_refused(application, echo, alice, token_for):
    status, _, content = serve(application, "/gw/echo/x", "POST", HTTP_AUTHORIZATION=f"Token {token_for(alice)}",
                               HTTP_TRANSFER_ENCODING="gzip", **{"wsgi.input": io.BytesIO(b"x")})  # fmt: skip
    assert status.startswith("411")
    assert json.loads(content)["code"] == "length_required"
