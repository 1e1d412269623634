"""The signed hop level in ``tracestate`` (issue 14, goals 1 and 2): what the gate issues,
what it accepts back, and what a forged, replayed or misrouted entry gets."""

from __future__ import annotations

import json
import re
import time

import pytest

from apps.audit.models import AuditEvent
from apps.gateway import tracing
from tests.gateway.test_wsgi_application import serve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def forwarded(level: int = 0, event_id: int = 41, *, trace: str = TRACE, expires: int | None = None) -> dict[str, str]:
    """The headers the gate gives an upstream, as that upstream passes them back on its own call."""
    context = tracing.TraceContext(trace_id=trace, flags="01", level=level)
    traceparent, tracestate = context.for_upstream(event_id, expires or int(time.time()) + 60)
    return {"HTTP_TRACEPARENT": traceparent, "HTTP_TRACESTATE": tracestate}


def test_a_request_without_trace_context_is_level_0_of_a_new_trace():
    context = tracing.received({})
    assert (context.level, context.parent_event_id) == (0, None)
    assert re.fullmatch(r"[0-9a-f]{32}", context.trace_id)


def test_the_callers_trace_id_and_other_vendors_entries_pass_on_with_ours_first():
    context = tracing.received(
        {"HTTP_TRACEPARENT": PARENT, "HTTP_TRACESTATE": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"}
    )
    assert (context.trace_id, context.flags, context.level) == (TRACE, "01", 0)
    traceparent, tracestate = context.for_upstream(7, int(time.time()) + 60)
    assert re.fullmatch(rf"00-{TRACE}-[0-9a-f]{{16}}-01", traceparent)
    assert traceparent != PARENT  # the gate's own span
    assert re.fullmatch(r"auditgate=1-7-\d{10}-[0-9a-f]{32},congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", tracestate)


def test_an_issued_entry_comes_back_as_the_next_level_naming_its_parent_event():
    context = tracing.received(forwarded(level=1, event_id=12345))
    assert (context.trace_id, context.level, context.parent_event_id) == (TRACE, 2, 12345)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: {**h, "HTTP_TRACESTATE": h["HTTP_TRACESTATE"].replace("auditgate=1-", "auditgate=2-")},
                     id="level raised"),
        pytest.param(lambda h: {**h, "HTTP_TRACESTATE": h["HTTP_TRACESTATE"].replace("-41-", "-40-")},
                     id="parent changed"),
        pytest.param(lambda h: {**h, "HTTP_TRACEPARENT": f"00-{'a' * 32}-00f067aa0ba902b7-01"},
                     id="replayed on another trace"),
        pytest.param(lambda h: {**h, "HTTP_TRACESTATE": h["HTTP_TRACESTATE"] + "," + h["HTTP_TRACESTATE"]},
                     id="two entries"),
        pytest.param(lambda h: {**h, "HTTP_TRACESTATE": "auditgate=1-41-9999999999-" + "0" * 32}, id="forged mac"),
        pytest.param(lambda h: {**h, "HTTP_TRACESTATE": "auditgate=1"}, id="malformed"),
        pytest.param(lambda h: {"HTTP_TRACESTATE": h["HTTP_TRACESTATE"]}, id="without its traceparent"),
        pytest.param(lambda h: {**h, "HTTP_TRACEPARENT": "garbage"}, id="invalid traceparent"),
    ],
)  # fmt: skip
def test_an_entry_the_gate_did_not_issue_for_this_trace_is_refused(tamper):
    with pytest.raises(tracing.InvalidTraceContext):
        tracing.received(tamper(forwarded()))


def test_an_expired_entry_is_refused():
    headers = forwarded(expires=int(time.time()) + 5)
    with pytest.raises(tracing.InvalidTraceContext, match="expired"):
        tracing.received(headers, now=time.time() + 10)


def test_the_entry_is_bound_to_the_secret_key(settings):
    headers = forwarded()
    settings.SECRET_KEY = "another deployment's key"
    with pytest.raises(tracing.InvalidTraceContext):
        tracing.received(headers)


def test_the_daemon_group_level_is_read_from_mod_wsgi():
    assert tracing.daemon_group_level({}) is None
    assert tracing.daemon_group_level({"mod_wsgi.process_group": "auditgate-gw"}) == 0
    assert tracing.daemon_group_level({"mod_wsgi.process_group": "auditgate-gw2"}) == 2
    assert tracing.daemon_group_level({"mod_wsgi.process_group": "auditgate-api"}) is None


# Through the gateway, as mod_wsgi calls it.


def gateway_events():
    return AuditEvent.objects.filter(event_type__startswith="gateway.")


@pytest.fixture
def echo(upstream_server, make_upstream):
    return make_upstream(upstream_server.url, name="echo")


def call(application, token: str, **environ) -> tuple[int, dict]:
    status, _, content = serve(application, "/gw/echo/x", "GET", HTTP_AUTHORIZATION=f"Token {token}", **environ)
    return int(status.split()[0]), json.loads(content)


@pytest.mark.django_db
def test_the_upstream_gets_a_signed_entry_naming_the_attempt_and_the_nested_call_links_to_it(
    application, echo, alice, token_for
):
    token = token_for(alice)
    status, seen = call(application, token, HTTP_TRACEPARENT=PARENT)
    assert status == 200
    outer = gateway_events().get()
    upstream_headers = seen["headers"]
    assert upstream_headers["traceparent"].startswith(f"00-{TRACE}-")
    assert upstream_headers["tracestate"].startswith(f"auditgate=1-{outer.pk}-")
    assert (outer.trace_id, outer.parent_event_id) == (TRACE, None)

    # The upstream calls the gate again, passing on what it got (as OpenTelemetry does).
    status, seen = call(application, token, HTTP_TRACEPARENT=upstream_headers["traceparent"],
                        HTTP_TRACESTATE=upstream_headers["tracestate"])  # fmt: skip
    assert status == 200
    inner = gateway_events().exclude(pk=outer.pk).get()
    assert (inner.trace_id, inner.parent_event_id) == (TRACE, outer.pk)
    assert seen["headers"]["tracestate"].startswith(f"auditgate=2-{inner.pk}-")


@pytest.mark.django_db
def test_a_forged_entry_is_refused_and_audited_and_nothing_is_forwarded(application, echo, alice, token_for):
    headers = forwarded()
    headers["HTTP_TRACESTATE"] = headers["HTTP_TRACESTATE"].replace("auditgate=1-", "auditgate=2-")
    status, body = call(application, token_for(alice), **headers)
    assert (status, body["code"]) == (400, "invalid_trace_context")
    event = gateway_events().get()
    assert (event.decision, event.reason, event.status, event.parent_event_id) == ("deny", "invalid_trace_context", 400,
                                                                                    None)  # fmt: skip


@pytest.mark.django_db
def test_a_chain_deeper_than_max_hops_is_refused_with_508_and_keeps_its_parent(
    application, echo, alice, token_for, settings
):
    settings.GATEWAY_MAX_HOPS = 2
    status, body = call(application, token_for(alice), **forwarded(level=2, event_id=99))
    assert (status, body["code"]) == (508, "too_many_hops")
    event = gateway_events().get()
    assert (event.reason, event.parent_event_id, event.trace_id) == ("too_many_hops", 99, TRACE)


@pytest.mark.django_db
def test_a_nested_call_that_arrived_in_another_levels_daemon_group_is_refused(application, echo, alice, token_for):
    status, body = call(
        application, token_for(alice), **forwarded(level=0), **{"mod_wsgi.process_group": "auditgate-gw"}
    )
    assert (status, body["code"]) == (400, "invalid_trace_context")
    status, _ = call(application, token_for(alice), **forwarded(level=0), **{"mod_wsgi.process_group": "auditgate-gw1"})
    assert status == 200
