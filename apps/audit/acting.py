"""Who acts, from where, in which request: the cause that every audited change records.

An ``Acting`` is built once where the action starts (a view from its request, a
management command from its name) and passed explicitly, as ``acting=``, to the
functions that change state (``apps.gateway.actions``, ``apps.gateway.tokens``) and
to ``apps.audit.events.record``, Zulip's ``acting_user`` widened to the request.
It holds plain values read when it is built: later changes to the request or the
user do not alter what is recorded.
"""

from __future__ import annotations

import getpass
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# What a management command records as its auth_method (AuditEvent.auth_method is 16 characters).
COMMAND = "command"
COMMAND_REQUEST_ID_PREFIX = "cmd-"


@dataclass(frozen=True, kw_only=True)
class Acting:
    """The acting context of an audit event (the ``actor_*``, request and client fields).

    ``user`` is the authenticated Django user, or None; ``username`` is its name, or for
    a management command the operating-system account that ran it (``user`` is None
    then: no Django user acts).
    """

    request_id: str = ""
    user: AbstractBaseUser | None = None
    username: str = ""
    auth_method: str = ""
    source_ip: str | None = None
    user_agent: str = ""
    method: str = ""
    path: str = ""

    @classmethod
    def from_request(cls, request: Any) -> Acting:
        """The context of a Django or DRF request: its id, its authenticated user, its client.

        Pass the Django request where reading DRF's ``request.user`` would authenticate
        (again), as authentication itself does.
        """
        user = getattr(request, "user", None)
        authenticated = bool(user is not None and user.is_authenticated)
        meta = request.META
        return cls(
            request_id=getattr(request, "request_id", ""),
            user=user if authenticated else None,
            username=user.get_username() if authenticated and user is not None else "",
            source_ip=meta.get("REMOTE_ADDR") or None,
            user_agent=meta.get("HTTP_USER_AGENT", "")[:255],
            method=request.method or "",
            path=request.path[:2000],
        )

    @classmethod
    def from_command(cls, name: str) -> Acting:
        """The context of a management command run on the host: the account that runs it,
        no client address, and a fresh ``cmd-`` request id shared by all its events."""
        return cls(
            request_id=f"{COMMAND_REQUEST_ID_PREFIX}{uuid.uuid4().hex}",
            username=_os_account()[:150],
            auth_method=COMMAND,
            user_agent=f"manage.py {name}"[:255],
        )

    def event_fields(self) -> dict[str, Any]:
        """The AuditEvent fields this context fills."""
        return {
            "request_id": self.request_id,
            "actor_id": self.user.pk if self.user is not None else None,
            "actor_username": self.username,
            "auth_method": self.auth_method,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "method": self.method,
            "path": self.path,
        }


def _os_account() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (e.g. a bare container uid)
        return f"uid {os.getuid()}"
