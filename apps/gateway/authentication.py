"""API token authentication, in one class so a later token model can replace it.

Tokens are read from the ``Authorization`` header only (never the query string
or body, which end up in logs): ``Token <key>`` or ``Bearer <key>``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header


class APITokenAuthentication(TokenAuthentication):
    keywords = (b"token", b"bearer")

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected '<scheme> <token>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: non-ASCII characters.") from None
        return self.authenticate_credentials(key)
