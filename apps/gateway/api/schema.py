"""What the OpenAPI schema says of the gateway's API beyond what the views show: the token
scheme, and the request and response examples (kept here, out of the views)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view


class TokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer agt_...`` (``Token agt_...`` works too)."""

    target_class = "apps.gateway.authentication.APITokenAuthentication"
    match_subclasses = True
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "agt_<key id>_<secret>_<checksum>",
            "description": "An API token with the management scope. `Authorization: Token <token>` works too.",
        }


def crud_schema(noun: str, plural: str, request: dict[str, Any], response: dict[str, Any]) -> Any:
    """Summaries and examples for the six operations of a model viewset."""
    req = OpenApiExample(f"A {noun}", value=request, request_only=True)
    res = OpenApiExample(f"A {noun}", value=response, response_only=True)
    patch = OpenApiExample(f"Disable a {noun}", value={"enabled": False}, request_only=True)
    return extend_schema_view(
        list=extend_schema(summary=f"List {plural}", examples=[res]),
        create=extend_schema(summary=f"Create a {noun}", description="Audited.", examples=[req, res]),
        retrieve=extend_schema(summary=f"One {noun}", examples=[res]),
        update=extend_schema(summary=f"Replace a {noun}", description="Audited.", examples=[req, res]),
        partial_update=extend_schema(summary=f"Change some fields of a {noun}", description="Audited.",
                                     examples=[patch, res]),
        destroy=extend_schema(summary=f"Delete a {noun}", description="Audited; its audit events stay."),
    )  # fmt: skip


UPSTREAM_REQUEST = {"name": "crm", "base_url": "https://crm.example.com:8443", "description": "Customer records",
                    "allowed_methods": ["GET", "POST"], "credential_header": "X-Api-Key",
                    "credential_value": "the upstream's key (write-only)"}  # fmt: skip
UPSTREAM_RESPONSE = {
    "url": "https://gate.example/api/upstreams/3/", "id": 3, "name": "crm", "base_url": "https://crm.example.com:8443",
    "enabled": True, "internal": False, "description": "Customer records", "connect_timeout": 5.0,
    "read_timeout": 30.0, "total_timeout": 120.0, "max_request_bytes": 10485760, "max_response_bytes": 1073741824,
    "allowed_methods": ["GET", "POST"], "preserve_host": False, "forward_cookies": False,
    "forward_rewrite_headers": False, "fail_open": False,
    "credential_header": "X-Api-Key", "has_credential": True, "has_identity_key": False,
    "created_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-01T10:00:00Z",
}  # fmt: skip
RULE_REQUEST = {
    "upstream": "crm", "user": "alice", "methods": ["GET"], "path_pattern": "/reports", "days": [0, 1, 2, 3, 4],
    "start_time": "08:00", "end_time": "18:00", "time_zone": "Europe/Berlin",
}  # fmt: skip
RULE_RESPONSE = {
    "url": "https://gate.example/api/rules/12/", "id": 12, "upstream": "crm", "subject": "user", "user": "alice",
    "group": None, "effect": "allow", "priority": 100, "methods": ["GET"], "path_match": "prefix",
    "path_pattern": "/reports", "case_insensitive": False, "source_cidrs": [], "days": [0, 1, 2, 3, 4],
    "start_time": "08:00:00",
    "end_time": "18:00:00", "time_zone": "Europe/Berlin", "valid_from": None, "valid_until": None, "enabled": True,
    "description": "", "created_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-01T10:00:00Z",
}  # fmt: skip


TOKEN_RESPONSE = {
    "url": "https://gate.example/api/tokens/5/", "id": 5, "key_id": "k3J9x2Qa", "label": "report job",
    "user": "alice", "status": "active", "created_at": "2026-03-01T10:00:00Z", "created_by": "alice",
    "expires_at": "2026-03-31T10:00:00Z", "revoked_at": None, "enabled": True, "all_upstreams": False,
    "upstreams": ["crm"], "scopes": [], "allowed_cidrs": [], "last_used_at": None, "last_used_ip": None,
    "management_api": False,
}  # fmt: skip
TOKEN_EXAMPLE = OpenApiExample("A token", value=TOKEN_RESPONSE, response_only=True)
