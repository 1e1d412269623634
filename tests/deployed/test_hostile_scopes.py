"""Issue 12, item 13 against the deployment: an administrator's token limited to one
upstream, even with every management scope, reads only that upstream's audit events and
cannot change another upstream, create one, or repoint its own.  Every refusal is a 403
JSON ``token_scope`` with the request id, and an ``auth.failed`` audit event."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.deployed.conftest import ALL_SCOPES, BASE_URL, https_session

pytestmark = pytest.mark.deployed


@pytest.fixture
def scene(admin, register_upstream) -> dict[str, str]:
    """Two upstreams, each with a gateway call of the admin in the trail."""
    mine, other = register_upstream(), register_upstream()
    calls = {name: admin.get(f"{BASE_URL}/gw/{name}/allowed/x", timeout=10) for name in (mine, other)}
    assert {response.status_code for response in calls.values()} == {200}
    return {"mine": mine, "other": other, "other_request": calls[other].headers["X-Request-ID"]}


@pytest.fixture
def limited_token(admin, scene) -> Iterator:
    """``limited_token(scopes)``: a session with a token of the admin limited to ``scene['mine']``."""
    made = []

    def make(scopes=ALL_SCOPES) -> requests.Session:
        payload = {"label": "hostile scopes", "upstreams": [scene["mine"]], "scopes": list(scopes)}
        created = admin.post(f"{BASE_URL}/api/tokens/", json=payload)
        assert created.status_code == 201, created.text
        made.append(created.json()["url"])
        session = https_session()
        session.headers["Authorization"] = f"Bearer {created.json()['token']}"
        return session

    yield make
    for url in made:
        assert admin.post(f"{url}revoke/").status_code == 200


def assert_refused(admin, response: requests.Response) -> None:
    """A 403 JSON token_scope carrying the request id, recorded as auth.failed."""
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    request_id = response.headers["X-Request-ID"]
    assert (body["code"], body["request_id"]) == ("token_scope", request_id)
    events = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": request_id}).json()["results"]
    assert [(e["event_type"], e["reason"], e["status"]) for e in events] == [("auth.failed", "token_scope", 403)]


def test_a_limited_token_reads_only_its_upstreams_events(admin, scene, limited_token):
    api = limited_token()
    listed = api.get(f"{BASE_URL}/api/audit/events/", params={"page_size": 500}, timeout=10).json()["results"]
    assert listed and {event["upstream_name"] for event in listed} == {scene["mine"]}
    for params in ({"upstream": scene["other"]}, {"request_id": scene["other_request"]}):
        assert api.get(f"{BASE_URL}/api/audit/events/", params=params, timeout=10).json()["results"] == []
    [theirs] = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": scene["other_request"]}).json()[
        "results"
    ]
    detail = api.get(f"{BASE_URL}/api/audit/events/{theirs['id']}/", timeout=10)
    assert (detail.status_code, detail.json()["code"]) == (404, "not_found")
    export = api.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson"}, timeout=30)
    assert export.status_code == 200
    assert {json.loads(line)["upstream_name"] for line in export.text.splitlines()} == {scene["mine"]}
    stats = api.get(f"{BASE_URL}/api/audit/stats", timeout=10).json()
    assert {row["upstream_name"] for row in stats["counts"]} == {scene["mine"]}
    assert_refused(admin, api.get(f"{BASE_URL}/api/audit/verify", timeout=30))


def test_a_limited_token_cannot_change_another_upstream_or_its_rules(admin, scene, limited_token):
    api = limited_token()
    other_url = f"{BASE_URL}/api/upstreams/{upstream_id(admin, scene['other'])}/"
    before = admin.get(other_url).json()
    assert_refused(admin, api.patch(other_url, json={"base_url": "http://127.0.0.1:9"}, timeout=10))
    assert_refused(admin, api.delete(other_url, timeout=10))
    assert_refused(admin, api.get(other_url, timeout=10))
    rule = {"upstream": scene["other"], "user": "admin", "methods": ["GET"], "path_pattern": "/"}
    assert_refused(admin, api.post(f"{BASE_URL}/api/rules/", json=rule, timeout=10))
    [other_rule] = admin.get(f"{BASE_URL}/api/rules/", params={"upstream": scene["other"]}).json()["results"]
    assert_refused(admin, api.patch(other_rule["url"], json={"path_pattern": "/"}, timeout=10))
    new = {"name": "hostile-new", "base_url": "http://127.0.0.1:9", "internal": True}
    assert_refused(admin, api.post(f"{BASE_URL}/api/upstreams/", json=new, timeout=10))
    assert admin.get(other_url).json() == before
    names = [row["name"] for row in api.get(f"{BASE_URL}/api/upstreams/", timeout=10).json()["results"]]
    assert names == [scene["mine"]]


def test_a_limited_token_cannot_repoint_its_own_upstream(admin, scene, limited_token):
    mine_url = f"{BASE_URL}/api/upstreams/{upstream_id(admin, scene['mine'])}/"
    before = admin.get(mine_url).json()
    for scopes in (ALL_SCOPES, ["audit:read", "policy:read"]):
        api = limited_token(scopes)
        assert_refused(admin, api.patch(mine_url, json={"base_url": "http://127.0.0.1:9"}, timeout=10))
    assert admin.get(mine_url).json()["base_url"] == before["base_url"]
    assert admin.get(f"{BASE_URL}/gw/{scene['mine']}/allowed/x", timeout=10).status_code == 200


def upstream_id(admin, name: str) -> int:
    [row] = admin.get(f"{BASE_URL}/api/upstreams/", params={"name": name}).json()["results"]
    return row["id"]
