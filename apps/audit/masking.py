"""Keep secrets that callers put in query strings out of the audit trail."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASK = "********"
_SENSITIVE = re.compile(r"token|key|secret|passw|pwd|auth|signature|session|credential", re.IGNORECASE)


def mask_query(query: str) -> str:
    """The query string with the values of sensitive-looking parameters replaced by ``MASK``."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return query if not _SENSITIVE.search(query) else MASK
    return urlencode([(k, MASK if _SENSITIVE.search(k) else v) for k, v in pairs], safe="*")


_SECRET_FIELDS = re.compile(r"secret|password|token_hash|credential_value|pepper|key$", re.IGNORECASE)


def mask_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """``{field: [before, after]}`` with the values of secret fields replaced by ``MASK``."""
    return {
        field: [MASK if value not in (None, "") else value for value in values]
        if _SECRET_FIELDS.search(field)
        else values
        for field, values in changes.items()
    }
