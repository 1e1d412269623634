"""The gateway's side of the management API's token checks (the checks: apps.core.api.permissions)."""

from __future__ import annotations

from typing import Any

from apps.gateway.models import APIToken


def request_token(request: Any) -> APIToken | None:
    """The API token that authenticated ``request``, or None (a session, or anonymous)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, APIToken) else None
