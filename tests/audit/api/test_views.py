import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor(client_for, make_user):
    return client_for(make_user(groups=("auditor",)))


def test_events_are_listed_newest_first_with_cursor_pages(auditor, make_event):
    events = [make_event(request_id=f"r{i}") for i in range(5)]
    first = auditor.get("/api/audit/events/?page_size=2").json()
    assert [e["id"] for e in first["results"]] == [events[4].id, events[3].id]
    second = auditor.get(first["next"]).json()
    assert [e["id"] for e in second["results"]] == [events[2].id, events[1].id]
    assert "count" not in first  # No COUNT(*) over the audit table.


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=bob", {"bob"}),
        ("upstream=hr", {"hr-call"}),
        ("decision=deny", {"denied"}),
        ("status=502", {"bad-gateway"}),
        ("request_id=denied", {"denied"}),
    ],
)
def test_events_can_be_filtered(auditor, query, expected, make_event):
    make_event(request_id="bob", actor_username="bob")
    make_event(request_id="hr-call", upstream_name="hr")
    make_event(request_id="denied", decision="deny", reason="no_matching_rule", status=403)
    make_event(request_id="bad-gateway", status=502)
    results = auditor.get(f"/api/audit/events/?{query}").json()["results"]
    assert {e["request_id"] for e in results} == expected


def test_request_ids_that_differ_only_in_case_are_different_requests(auditor, make_event):
    # mod_unique_id ids use both cases: awYg-gPTPGpuHWtOlyQAuwAAAHI and ...QAUw... are two requests.
    make_event(request_id="awYg-gPTPGpuHWtOlyQAuwAAAHI", status=200)
    make_event(request_id="awYg-gPTPGpuHWtOlyQAUwAAAHI", status=502)
    results = auditor.get("/api/audit/events/", {"request_id": "awYg-gPTPGpuHWtOlyQAuwAAAHI"}).json()["results"]
    assert [(e["request_id"], e["status"]) for e in results] == [("awYg-gPTPGpuHWtOlyQAuwAAAHI", 200)]


def test_events_can_be_filtered_by_time_range(auditor, make_event):
    now = timezone.now()
    make_event(request_id="old", occurred_at=now - timedelta(days=2))
    make_event(request_id="new", occurred_at=now)
    after = (now - timedelta(days=1)).isoformat()
    only = {"event_type": "gateway.request"}  # not the auditor's own token.created event
    results = auditor.get("/api/audit/events/", {"occurred_after": after, **only}).json()["results"]
    assert [e["request_id"] for e in results] == ["new"]
    results = auditor.get("/api/audit/events/", {"occurred_before": after, **only}).json()["results"]
    assert [e["request_id"] for e in results] == ["old"]


def test_an_invalid_filter_value_is_a_400_not_a_500(auditor):
    response = auditor.get("/api/audit/events/?occurred_after=yesterday")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("value", ["0.0", "200.0", "1e2", "2 00"])
@pytest.mark.parametrize("path", ["/api/audit/events/", "/api/audit/events/export/"])
def test_an_integer_filter_refuses_what_is_not_an_integer(auditor, path, value):
    # Django's IntegerField alone reads "200.0" as 200: a filter the schema calls integer must not.
    response = auditor.get(path, {"status": value, "format": "ndjson"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nobody_can_change_events_through_the_api(client_for, admin_user, method, make_event):
    event = make_event()
    url = "/api/audit/events/" if method == "post" else f"/api/audit/events/{event.id}/"
    response = getattr(client_for(admin_user), method)(url, {"status": 500}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert AuditEvent.objects.get(pk=event.pk).status == 200


def test_an_event_has_a_detail_view(auditor, make_event):
    event = make_event(request_id="abc")
    assert auditor.get(f"/api/audit/events/{event.id}/").json()["request_id"] == "abc"


def test_events_can_be_filtered_by_type(auditor, make_event):
    make_event(request_id="g")
    results = auditor.get("/api/audit/events/", {"event_type": "token.created"}).json()["results"]
    assert [e["event_type"] for e in results] == ["token.created"]  # the auditor's own token


def test_users_who_are_not_auditors_see_only_their_own_events(client_for, make_user, make_event):
    alice, bob = make_user("alice"), make_user("bob")
    make_event(request_id="alice-1", actor=alice, actor_username="alice")
    make_event(request_id="bob-1", actor=bob, actor_username="bob")
    results = client_for(alice).get("/api/audit/events/", {"event_type": "gateway.request"}).json()["results"]
    assert [e["request_id"] for e in results] == ["alice-1"]
    bobs = AuditEvent.objects.get(request_id="bob-1")
    assert client_for(alice).get(f"/api/audit/events/{bobs.id}/").status_code == 404


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"client_ip": "10.1.2.3"}, {"a"}),
        ({"client_ip": "10.1.0.0/16"}, {"a", "b"}),
        ({"client_ip": "10.1.2.0/23"}, {"a"}),
        ({"client_ip": "10.0.0.0/8"}, {"a", "b", "c"}),
        ({"client_ip": "2001:db8::1"}, {"v6"}),
        ({"status_min": 400}, {"b", "c"}),
        ({"status_min": 400, "status_max": 499}, {"b"}),
        ({"path_prefix": "/admin"}, {"c"}),
        ({"token_key_id": "kid2"}, {"b"}),
        ({"reason": "denied_by_rule"}, {"b"}),
    ],
)
def test_the_filters_people_need(auditor, make_event, query, expected):
    make_event(request_id="a", source_ip="10.1.2.3", status=200, path="/reports", token_key_id="kid1")
    make_event(request_id="b", source_ip="10.1.77.1", status=403, reason="denied_by_rule", token_key_id="kid2")
    make_event(request_id="c", source_ip="10.200.0.1", status=502, path="/admin/x")
    make_event(request_id="v6", source_ip="2001:db8::1", status=200)
    results = auditor.get("/api/audit/events/", {**query, "event_type": "gateway.request"}).json()["results"]
    assert {e["request_id"] for e in results} == expected


@pytest.mark.parametrize("value", ["not-an-ip", "2001:db8::/64", "0.0.0.0/0"])
def test_bad_client_ip_filters_are_400(auditor, value):
    response = auditor.get("/api/audit/events/", {"client_ip": value})
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_reading_the_audit_trail_is_itself_audited(auditor, make_event):
    make_event(request_id="x")
    auditor.get("/api/audit/events/", {"upstream": "crm"})
    viewed = AuditEvent.objects.get(event_type="audit.viewed")
    assert viewed.query == "upstream=crm"
    assert viewed.actor_username.startswith("user")


def test_the_export_streams_csv_safe_from_formula_injection(auditor, make_event):
    make_event(request_id="plain", user_agent="curl/8")
    make_event(request_id="evil", user_agent='=HYPERLINK("http://x")', actor_username="@SUM(1+1)")
    response = auditor.get("/api/audit/events/export/", {"event_type": "gateway.request"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["request_id"] for r in rows] == ["plain", "evil"]
    assert rows[1]["user_agent"].startswith("'=") and rows[1]["actor_username"] == "'@SUM(1+1)"
    assert AuditEvent.objects.filter(event_type="audit.exported").count() == 1


def test_the_export_in_ndjson_honours_the_filters(auditor, make_event, monkeypatch):
    from apps.audit import exporting

    monkeypatch.setattr(exporting, "BATCH", 3)  # several keyset pages
    for i in range(7):
        make_event(request_id=f"r{i}", status=200 if i % 2 else 500)
    response = auditor.get("/api/audit/events/export/", {"format": "ndjson", "status": 500})
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["request_id"] for line in lines] == ["r0", "r2", "r4", "r6"]
    first = lines[0]
    assert (first["client_aborted"], first["actor_groups"], first["changes"]) == (False, [], None)
    assert first["occurred_at"].endswith("Z") and "T" in first["occurred_at"]


def test_an_export_the_client_leaves_halfway_leaves_the_connection_usable(make_event, monkeypatch):
    """The next page's query is already running when a page goes out: a client that leaves
    then must not leave its result on the connection (MySQL: "Commands out of sync")."""
    from apps.audit import exporting

    monkeypatch.setattr(exporting, "BATCH", 3)
    for i in range(7):
        make_event(request_id=f"r{i}")
    lines = exporting.ndjson_lines(AuditEvent.objects.all())
    first_page = next(lines)
    assert [json.loads(line)["request_id"] for line in first_page.splitlines()] == ["r0", "r1", "r2"]
    lines.close()
    assert AuditEvent.objects.count() == 7


def test_ordinary_users_export_only_their_own_events(client_for, make_user, make_event):
    alice = make_user("alice")
    make_event(request_id="mine", actor=alice)
    make_event(request_id="theirs")
    query = {"format": "ndjson", "event_type": "gateway.request"}
    body = b"".join(client_for(alice).get("/api/audit/events/export/", query).streaming_content)
    assert [json.loads(line)["request_id"] for line in body.decode().splitlines()] == ["mine"]


def test_stats_count_per_bucket_and_give_latency_percentiles(auditor, make_event):
    now = timezone.now() - timedelta(minutes=5)  # inside the default window (the last 24 hours)
    for ms in range(1, 101):
        make_event(occurred_at=now, duration_ms=float(ms), upstream_name="crm", status=200)
    make_event(occurred_at=now - timedelta(hours=1), upstream_name="crm", decision="deny", status=403,
               event_type="gateway.denied")  # fmt: skip
    body = auditor.get("/api/audit/stats", {"bucket": "hour"}).json()
    counts = {(c["decision"], c["status"]): c["count"] for c in body["counts"]}
    assert counts == {("allow", 200): 100, ("deny", 403): 1}
    latency = body["latency_ms"]
    assert latency["p50"] == pytest.approx(50.5) and latency["p99"] == pytest.approx(99.01)


def test_stats_refuse_an_unknown_bucket(auditor):
    response = auditor.get("/api/audit/stats", {"bucket": "fortnight"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_stats_are_for_auditors(client_for, make_user):
    assert client_for(make_user()).get("/api/audit/stats").status_code == 403


@pytest.mark.parametrize("url_format", [None, "json"])
@pytest.mark.parametrize("serializer", ["AuditEventSerializer", "AuditEventSummarySerializer"])
def test_the_fast_event_representation_is_exactly_drfs(rf, admin_user, make_event, url_format, serializer):
    """The serializers build rows directly (apps.audit.api.serializers); DRF's generic path
    must give the same dict for every kind of value, None included."""
    from rest_framework import serializers
    from rest_framework.request import Request

    from apps.audit.api import serializers as audit_serializers

    serializer_class = getattr(audit_serializers, serializer)

    made = [
        make_event(actor=admin_user, duration_ms=12.345678, upstream_id=7, rule_id=3, status=200, upstream_status=201,
                   source_ip="2001:db8::1", request_bytes=10, response_bytes=2**40, query="a=1&b=%C3%A9",
                   user_agent="curl/8 ü", trace_id="4bf92f3577b34da6a3ce929d0e0e4736", parent_event_id=41,
                   close_code=1000),
        make_event(decision="deny", reason="no_matching_rule", status=403, upstream_status=None, source_ip=None,
                   rule_id=None, upstream_id=None, path="/ünïcode"),
        make_event(event_type="upstream.updated", decision="", reason="", status=None, method="",
                   object_type="gateway.upstream", object_id="5", object_repr="crm",
                   changes={"base_url": ["http://a", "http://b"], "credential_value": "***"}),
    ]  # fmt: skip
    request = Request(rf.get("/api/audit/events/"))
    context = {"request": request, "format": url_format}
    for event in AuditEvent.objects.filter(pk__in=[e.pk for e in made]):
        fast = serializer_class(context=context).to_representation(event)
        generic = serializers.HyperlinkedModelSerializer.to_representation(serializer_class(context=context), event)
        assert fast == generic
        assert list(fast) == list(generic)  # the same keys in the same order
    assert fast["url"] == f"http://testserver/api/audit/events/{event.pk}" + (".json" if url_format else "/")


@pytest.mark.parametrize("query", [{"status_max": "-1"}, {"status": "70000"}])
def test_a_filter_no_row_can_match_gives_empty_stats_and_exports_not_a_500(auditor, make_event, query):
    # The ORM knows that no unsigned status is -1 before asking MariaDB; the stats and the export
    # build their SQL themselves and were answered 500 (found by the contract fuzzer).
    make_event(status=200, duration_ms=5.0)
    auditor.raise_request_exception = False
    stats = auditor.get("/api/audit/stats", query)
    assert stats.status_code == 200, stats.content
    assert (stats.json()["counts"], stats.json()["latency_ms"]) == ([], {"p50": None, "p95": None, "p99": None})
    export = auditor.get("/api/audit/events/export/", {**query, "format": "ndjson"})
    assert export.status_code == 200
    assert b"".join(export.streaming_content) == b""


# --- The causal chain (trace_id, parent_event_id) and GET .../chain/ ----------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SUMMARY_KEYS = [
    "url", "id", "occurred_at", "request_id", "actor_username", "token_key_id", "upstream_name", "method", "path",
    "decision", "reason", "status", "error", "duration_ms", "trace_id", "parent_event_id",
]  # fmt: skip


@pytest.fixture
def chain_of_calls(make_event):
    """A user's request to the portal; while serving it the portal called crm twice, and crm called billing."""
    user = make_event(upstream_name="portal", path="/orders/17", trace_id=TRACE)
    crm = make_event(upstream_name="crm", actor_username="portal-svc", trace_id=TRACE, parent_event_id=user.pk)
    again = make_event(upstream_name="crm", actor_username="portal-svc", trace_id=TRACE, parent_event_id=user.pk,
                       decision="deny", reason="no_matching_rule", status=403)  # fmt: skip
    billing = make_event(upstream_name="billing", actor_username="crm-svc", trace_id=TRACE, parent_event_id=crm.pk,
                         status=504, error="upstream_read_timeout", close_code=None)  # fmt: skip
    return {"user": user, "crm": crm, "again": again, "billing": billing}


def test_events_show_their_trace_their_parent_and_a_link_to_their_chain(auditor, chain_of_calls):
    crm = chain_of_calls["crm"]
    body = auditor.get(f"/api/audit/events/{crm.pk}/").json()
    assert (body["trace_id"], body["parent_event_id"], body["close_code"]) == (TRACE, chain_of_calls["user"].pk, None)
    assert body["chain_url"] == f"http://testserver/api/audit/events/{crm.pk}/chain/"


def test_the_chain_is_the_whole_tree_from_the_users_request_down(auditor, chain_of_calls):
    e = chain_of_calls
    response = auditor.get(f"/api/audit/events/{e['billing'].pk}/chain/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("requested", "root", "truncated", "looped", "count")} == {
        "requested": e["billing"].pk, "root": e["user"].pk, "truncated": False, "looped": False, "count": 4,
    }  # fmt: skip

    def ids(node):
        return node["event"]["id"], [ids(child) for child in node["children"]]

    assert ids(body["tree"]) == (e["user"].pk, [(e["crm"].pk, [(e["billing"].pk, [])]), (e["again"].pk, [])])
    leaf = body["tree"]["children"][0]["children"][0]["event"]
    assert list(leaf) == SUMMARY_KEYS
    assert leaf["url"] == f"http://testserver/api/audit/events/{e['billing'].pk}/"
    assert (leaf["upstream_name"], leaf["actor_username"], leaf["status"], leaf["error"]) == (
        "billing", "crm-svc", 504, "upstream_read_timeout")  # fmt: skip
    assert (leaf["trace_id"], leaf["parent_event_id"]) == (TRACE, e["crm"].pk)
    assert auditor.get(f"/api/audit/events/{e['user'].pk}/chain/").json()["tree"] == body["tree"]


def test_reading_a_chain_is_audited(auditor, chain_of_calls):
    auditor.get(f"/api/audit/events/{chain_of_calls['crm'].pk}/chain/")
    viewed = AuditEvent.objects.get(event_type="audit.viewed")
    assert (viewed.object_type, viewed.object_id) == ("audit.auditevent", str(chain_of_calls["crm"].pk))
    assert viewed.path == f"/api/audit/events/{chain_of_calls['crm'].pk}/chain/"


def test_the_chain_of_an_unknown_event_is_a_404(auditor):
    response = auditor.get("/api/audit/events/999999999/chain/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert response.json()["request_id"] == response["X-Request-ID"]


def test_the_chain_needs_the_audit_read_scope(token_for, admin_user, chain_of_calls):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(admin_user, scopes=['policy:read'])}")
    response = api.get(f"/api/audit/events/{chain_of_calls['crm'].pk}/chain/")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    assert APIClient().get(f"/api/audit/events/{chain_of_calls['crm'].pk}/chain/").status_code == 401


def test_users_who_are_not_auditors_see_only_their_own_events_of_a_chain(client_for, make_user, make_event):
    alice = make_user("alice")
    mine = make_event(actor=alice, actor_username="alice", request_id="mine")
    service = make_event(actor_username="portal-svc", parent_event_id=mine.pk, request_id="service")
    assert client_for(alice).get(f"/api/audit/events/{service.pk}/chain/").status_code == 404
    body = client_for(alice).get(f"/api/audit/events/{mine.pk}/chain/").json()
    assert (body["count"], body["tree"]["children"]) == (1, [])


def test_a_token_limited_to_some_upstreams_sees_only_their_events_of_a_chain(token_for, admin_user, make_event):
    from rest_framework.test import APIClient

    from apps.gateway.models import Upstream

    crm = Upstream.objects.create(name="crm", base_url="http://crm.internal", internal=True)
    hr = Upstream.objects.create(name="hr", base_url="http://hr.internal", internal=True)
    user = make_event(upstream_id=crm.pk, upstream_name="crm")
    make_event(upstream_id=hr.pk, upstream_name="hr", parent_event_id=user.pk)
    seen = make_event(upstream_id=crm.pk, upstream_name="crm", parent_event_id=user.pk)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(admin_user, all_upstreams=False, upstreams=[crm])}")
    body = api.get(f"/api/audit/events/{user.pk}/chain/").json()
    assert [child["event"]["id"] for child in body["tree"]["children"]] == [seen.pk]


def test_the_browsable_api_links_an_event_to_its_chain_and_shows_it(client, make_user, chain_of_calls):
    client.force_login(make_user(groups=("auditor",)))
    crm = chain_of_calls["crm"]
    detail = client.get(f"/api/audit/events/{crm.pk}/", HTTP_ACCEPT="text/html")
    assert detail.status_code == 200
    assert f'href="http://testserver/api/audit/events/{crm.pk}/chain/"' in detail.content.decode()
    page = client.get(f"/api/audit/events/{crm.pk}/chain/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert f'href="http://testserver/api/audit/events/{chain_of_calls["billing"].pk}/"' in page.content.decode()


def test_events_can_be_filtered_by_parent(auditor, chain_of_calls):
    results = auditor.get("/api/audit/events/", {"parent_event_id": chain_of_calls["user"].pk}).json()["results"]
    assert [e["id"] for e in results] == [chain_of_calls["again"].pk, chain_of_calls["crm"].pk]


def test_events_can_be_filtered_by_trace_within_an_hour(auditor, chain_of_calls, make_event):
    make_event(trace_id="0af7651916cd43dd8448eb211c80319c")
    after = (timezone.now() - timedelta(minutes=59)).isoformat()
    results = auditor.get("/api/audit/events/", {"trace_id": TRACE.upper(), "occurred_after": after}).json()["results"]
    assert {e["id"] for e in results} == {e.pk for e in chain_of_calls.values()}


@pytest.mark.parametrize(
    "query",
    [
        {"trace_id": TRACE},  # no window: the column has no index
        {"trace_id": TRACE, "occurred_after": "2026-01-01T00:00:00Z"},  # up to now: more than an hour
        {"trace_id": TRACE, "occurred_after": "2026-01-01T00:00:00Z", "occurred_before": "2026-01-01T01:00:01Z"},
        {"trace_id": "not-a-trace", "occurred_after": "2026-01-01T00:00:00Z", "occurred_before": "2026-01-01T01:00Z"},
    ],
)
def test_a_trace_filter_without_a_short_window_is_a_400(auditor, query):
    for url in ("/api/audit/events/", "/api/audit/events/export/", "/api/audit/stats"):
        response = auditor.get(url, query)
        assert (response.status_code, response.json()["code"]) == (400, "invalid"), url
        assert list(response.json()["errors"]) == ["trace_id"]


def test_exports_carry_the_chain_columns_under_their_names(auditor, chain_of_calls):
    import csv
    import io

    query = {"parent_event_id": chain_of_calls["crm"].pk}
    body = b"".join(auditor.get("/api/audit/events/export/", {**query, "format": "ndjson"}).streaming_content)
    (line,) = [json.loads(raw) for raw in body.splitlines()]
    assert (line["trace_id"], line["parent_event_id"], line["close_code"]) == (TRACE, chain_of_calls["crm"].pk, None)
    body = b"".join(auditor.get("/api/audit/events/export/", query).streaming_content)
    (row,) = csv.DictReader(io.StringIO(body.decode()))
    assert (row["trace_id"], row["parent_event_id"], row["close_code"]) == (TRACE, str(chain_of_calls["crm"].pk), "")
