"""The one keyed hash the project signs with: hex HMAC-SHA256 (identity assertions,
checkpoint signatures, token secrets under their pepper)."""

from __future__ import annotations

import hashlib
import hmac


def sign(key: str | bytes, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message``; a ``str`` key is taken as its UTF-8 bytes."""
    return hmac.new(key.encode() if isinstance(key, str) else key, message, hashlib.sha256).hexdigest()
