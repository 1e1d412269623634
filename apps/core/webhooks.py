"""Signed HTTPS webhooks: the SIEM stream (apps.siem) and alerts (apps.alerts) both post through here.

A request carries ``X-Auditgate-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 under the hook's secret of ``b"<t>." + body``: the receiver recomputes it
(``verify``) and rejects a body that was changed, or replayed later than its tolerance.
The scheme is the one Stripe and GitHub receivers already know how to check.

Delivery is the caller's concern (cursors, retries): ``post`` sends once and raises
``DeliveryFailed`` unless the receiver answered 2xx, so a caller advances only on success.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import urllib3
from django.core.exceptions import ImproperlyConfigured

SIGNATURE_HEADER = "X-Auditgate-Signature"
USER_AGENT = "auditgate-webhook/1"
# A shorter shared secret could be guessed, and every signature with it forged.
MIN_SECRET_LENGTH = 16


class DeliveryFailed(Exception):
    """The receiver did not acknowledge the body (no connection, a timeout, or a non-2xx answer)."""


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """What a receiver checks: the signature is ours and at most ``tolerance`` seconds old."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={given}")


def read_secret(path: str) -> str:
    """A hook's secret from its root-only file (never from a command line, which others can read)."""
    return Path(path).read_text(encoding="utf-8").strip()


def configured(url: str, secret: str, ca_file: str, *, url_setting: str, key_setting: str) -> Webhook:
    """The hook the settings describe, refused when it would send the trail in clear or sign it
    with a guessable secret (the ``*_setting`` names say what to fix)."""
    if not url.startswith("https://"):
        raise ImproperlyConfigured(f"Set {url_setting} to an https:// URL.")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ImproperlyConfigured(f"The webhook secret ({key_setting}) needs {MIN_SECRET_LENGTH}+ characters.")
    return Webhook(url, secret.encode(), ca_file)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: bytes
    # A private CA's certificate (PEM) to check the receiver against; empty: the system's CAs.
    ca_file: str = ""
    timeout: float = 10.0

    @cached_property
    def _pool(self) -> urllib3.PoolManager:
        # One pool per hook, kept for the process: a stream posts many batches to one receiver.
        options: dict[str, object] = {"cert_reqs": "CERT_REQUIRED", "retries": False}
        if self.ca_file:
            options["ca_certs"] = self.ca_file
        return urllib3.PoolManager(num_pools=2, maxsize=1, **options)  # type: ignore[arg-type]

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        """Send ``body`` once; returns the receiver's 2xx status, or raises ``DeliveryFailed``."""
        sent = {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature(self.secret, int(time.time()), body),
            **(headers or {}),
        }
        try:
            response = self._pool.request(
                "POST", self.url, body=body, headers=sent, timeout=self.timeout, redirect=False, preload_content=True
            )
        except urllib3.exceptions.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from error
        if not 200 <= response.status < 300:
            raise DeliveryFailed(f"HTTP {response.status}")
        return response.status

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        return f"Webhook({self.url!r})"
