"""Examples the OpenAPI schema shows for the audit API (kept out of the views)."""

EVENT_EXAMPLE = {
    "url": "https://gate.example/api/audit/events/1042/",
    "chain_url": "https://gate.example/api/audit/events/1042/chain/", "id": 1042, "event_type": "gateway.denied",
    "occurred_at": "2026-03-02T09:15:27.113Z", "duration_ms": 3.2, "request_id": "ZT7b1X8AAQEAAB3xGk0AAAAB",
    "trace_id": "0af7651916cd43dd8448eb211c80319c", "parent_event_id": None, "actor": 7, "actor_username": "bob",
    "token_key_id": "k3J9x2Qa", "source_ip": "10.0.0.5", "user_agent": "curl/8.5.0", "upstream_id": 3,
    "upstream_name": "crm", "method": "POST", "path": "/reports/x", "query": "", "decision": "deny",
    "reason": "no_matching_rule", "rule_id": None, "status": 403, "upstream_status": None, "error": "",
    "close_code": None, "injected_credential": "", "request_bytes": 0, "response_bytes": 0, "object_type": "",
    "object_id": "", "object_repr": "", "changes": None,
}  # fmt: skip


def _node(pk: int, parent: int | None, upstream: str, path: str, username: str, children: list[dict[str, object]],
          decision: str = "allow", status: int = 200) -> dict[str, object]:  # fmt: skip
    event = {
        "url": f"https://gate.example/api/audit/events/{pk}/", "id": pk, "occurred_at": "2026-03-02T09:15:27.113Z",
        "request_id": f"ZT7b1X8AAQEAAB3xGk0AAA{pk % 100:02d}", "actor_username": username, "token_key_id": "k3J9x2Qa",
        "upstream_name": upstream, "method": "GET", "path": path, "decision": decision,
        "reason": "allowed" if decision == "allow" else "no_matching_rule", "status": status, "error": "",
        "duration_ms": 41.7, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_event_id": parent,
    }  # fmt: skip
    return {"event": event, "children": children}


# A user's request to the portal; while serving it the portal called crm (which called billing) and stock.
CHAIN_EXAMPLE = {
    "requested": 2042, "root": 2040, "truncated": False, "looped": False, "count": 4,
    "tree": _node(2040, None, "portal", "/orders/17", "alice", [
        _node(2041, 2040, "crm", "/customers/9", "portal-svc", [
            _node(2042, 2041, "billing", "/invoices", "crm-svc", []),
        ]),
        _node(2043, 2040, "stock", "/items/3", "portal-svc", [], decision="deny", status=403),
    ]),
}  # fmt: skip

VERIFY_EXAMPLE: dict[str, object] = {
    "ok": True, "first_bad_seq": None, "events_checked": 100412, "segments_checked": 1691, "unsealed_tail": 17,
    "signatures_checked": False, "checkpoint_file_checked": False, "from_seq": 1, "through_seq": 100412,
    "complete": False, "next": "https://gate.example/api/audit/verify?from_seq=100413&max_events=100000",
    "last_full_verification": {"event_id": 1008940, "at": "2026-03-02T03:17:09.412000+00:00", "ok": True,
                               "by": "root", "from_seq": 1, "through_seq": 1008921},
    "problems": [],
}  # fmt: skip

STATS_EXAMPLE = {
    "from": "2026-03-01T09:00:00+00:00", "to": "2026-03-02T09:00:00+00:00", "bucket": "hour",
    "counts": [{"bucket": "2026-03-02T08:00:00+00:00", "upstream_name": "crm", "decision": "allow", "status": 200,
                "count": 412},
               {"bucket": "2026-03-02T08:00:00+00:00", "upstream_name": "crm", "decision": "deny", "status": 403,
                "count": 3}],
    "latency_ms": {"p50": 21.4, "p95": 88.0, "p99": 240.3},
    "top_callers": [{"actor_username": "report-job", "requests": 380, "denied": 0, "errors": 1}],
    "recent_denials": [{"id": 1042, "occurred_at": "2026-03-02T08:15:27.113000+00:00", "actor_username": "bob",
                        "upstream_name": "crm", "method": "POST", "path": "/reports/x", "reason": "no_matching_rule",
                        "status": 403, "request_id": "ZT7b1X8AAQEAAB3xGk0AAAAB"}],
    "read_from": "replica", "replica": {"state": "ok", "lag_seconds": 0},
}  # fmt: skip

_ECHO = "https://gate.example/api/audit/events/1042/evidence/"
EVIDENCE_EXAMPLE = {
    "event": 1042,
    "request": {
        "sha256": "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef", "bytes": 41, "truncated": False,
        "redacted": ["field:password", "header:authorization"], "content_type": "application/json",
        "headers": [["Content-Type", "application/json"], ["Authorization", "[redacted]"]],
        "body_url": _ECHO + "request/",
    },
    "response": {
        "withheld": "content_encoded", "redacted": [], "content_type": "text/html",
        "headers": [["Content-Type", "text/html"], ["Content-Encoding", "gzip"]], "body_url": None,
    },
}  # fmt: skip
