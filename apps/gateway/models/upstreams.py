from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.secrets_at_rest import EncryptedTextField
from apps.gateway import paths
from apps.gateway.choices import HTTP_METHODS
from apps.gateway.targets import check_base_url
from apps.gateway.validators import (
    validate_base_url,
    validate_header_name,
    validate_methods,
    validate_redact_fields,
    validate_redact_headers,
)

MIB = 1024 * 1024
# The longest exchange an upstream may allow.  It stays below mod_wsgi's per-thread
# request-timeout bound for the gateway group (60 s x (1 + ln 8 threads) = 185 s), and
# it bounds how long an attempt can legitimately stay open (AUDIT_OPEN_ATTEMPT_BOUND_SECONDS).
MAX_TOTAL_TIMEOUT = 170.0
# A WebSocket through /gw/ (apps.gateway.wsrelay) is closed after this long without a message
# either way, and after its maximum duration whatever it does.  The caps bound how long a
# WebSocket's audit event can stay open (AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS: the trail's
# sealing waits for an open WebSocket up to that long) and sit below Apache's tunnel timeout.
MAX_WEBSOCKET_IDLE_TIMEOUT = 3600
MAX_WEBSOCKET_DURATION = 4 * 3600
# Evidence capture keeps at most this much of each body of an exchange (apps.audit.evidence).
MAX_EVIDENCE_BYTES = MIB


def all_methods() -> list[str]:
    return list(HTTP_METHODS)


class UnsafeTarget(ValueError):
    """The URL built for an upstream does not point at that upstream."""


class Upstream(models.Model):
    """An internal HTTP service reachable through ``/gw/<name>/``."""

    name = models.SlugField(max_length=64, unique=True, help_text="Used in the URL: /gw/<name>/...")
    base_url = models.CharField(max_length=500, validators=[validate_base_url])
    enabled = models.BooleanField(default=True)
    internal = models.BooleanField(
        default=False,
        help_text="May resolve to loopback, private or link-local addresses (turns the SSRF guard off).",
    )
    description = models.CharField(max_length=500, blank=True)
    # connect + read stay below mod_wsgi's socket-timeout (45 s, apache/vhost.conf) so the
    # gateway always answers with its own 504 before Apache gives up on the daemon.
    connect_timeout = models.FloatField(
        default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(5.0)], help_text="Seconds."
    )
    read_timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1), MaxValueValidator(38.0)], help_text="Seconds."
    )
    # The whole exchange, from sending the request to the last byte of the answer: an upstream
    # that trickles a byte within every read_timeout would otherwise hold a gateway thread for
    # as long as the client stays (README, "Timeouts").
    total_timeout = models.FloatField(
        default=120.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(MAX_TOTAL_TIMEOUT)],
        help_text="Seconds, for the whole exchange (request sent to last byte relayed).",
    )
    max_request_bytes = models.PositiveBigIntegerField(
        default=10 * MIB, validators=[MaxValueValidator(16 * 1024 * MIB)], help_text="Larger bodies get 413."
    )
    max_response_bytes = models.PositiveBigIntegerField(
        default=1024 * MIB, validators=[MaxValueValidator(16 * 1024 * MIB)], help_text="Larger answers get 502."
    )
    websocket_idle_timeout = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_WEBSOCKET_IDLE_TIMEOUT)],
        help_text="Seconds without a WebSocket message either way before the gateway closes it (1001).",
    )
    websocket_max_duration = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_WEBSOCKET_DURATION)],
        help_text="Seconds a WebSocket may stay open at most; then the gateway closes it (1008).",
    )
    allowed_methods = models.JSONField(default=all_methods, validators=[validate_methods])
    preserve_host = models.BooleanField(default=False, help_text="Send the client's Host header, not the upstream's.")
    forward_cookies = models.BooleanField(default=False, help_text="Forward the caller's Cookie header.")
    forward_rewrite_headers = models.BooleanField(
        default=False,
        help_text="Forward headers that make common servers rewrite the request (X-Original-URL, "
        "X-HTTP-Method-Override...). Default: dropped.",
    )
    fail_open = models.BooleanField(
        default=False,
        help_text="Forward even when the audit trail cannot record the attempt (logged loudly). Default: refuse (503).",
    )
    sensitive = models.BooleanField(
        default=False,
        help_text="Every use raises an alert (apps.alerts): admin consoles, production databases' APIs...",
    )
    # Evidence capture (apps.audit.evidence): the bodies of forwarded exchanges, redacted, stored
    # beside the trail and readable by auditors only.  Also asked for by a rule (AccessRule).
    capture_evidence = models.BooleanField(
        default=False, help_text="Keep the bodies of forwarded calls as evidence (auditors read them)."
    )
    evidence_max_bytes = models.PositiveIntegerField(
        default=64 * 1024,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_EVIDENCE_BYTES)],
        help_text="Bytes kept of each body, per direction (at most 1 MiB); beyond: the prefix, marked truncated.",
    )
    evidence_redact_fields = models.JSONField(
        default=list, blank=True, validators=[validate_redact_fields],
        help_text="JSON keys and form fields whose values are replaced by [redacted], at any depth, any letter case.",
    )  # fmt: skip
    evidence_redact_headers = models.JSONField(
        default=list, blank=True, validators=[validate_redact_headers],
        help_text="Headers redacted besides Authorization, Cookie, Set-Cookie, the credential and the gateway's own.",
    )  # fmt: skip
    # Write-only secrets: never returned by the API or shown by the admin, never logged or audited,
    # stored encrypted (apps.core.secrets_at_rest).  The lengths are the API's and the admin's
    # (serializers, forms); a column holds the token, about 1.4 x the text + 100 characters.
    credential_header = models.CharField(
        max_length=100, blank=True, validators=[validate_header_name], help_text="e.g. Authorization or X-Api-Key."
    )
    credential_value = EncryptedTextField(max_length=1000, blank=True)
    identity_key = EncryptedTextField(
        max_length=200, blank=True, help_text="HMAC key of the X-Auditgate-Identity header; empty: no header."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            check_base_url(self.base_url, internal=self.internal)
        except ValidationError as exc:
            raise ValidationError({"base_url": exc}) from None

    def url_for(self, path: str, query: str) -> str:
        """Base path + normalised path, then checked to still point at this upstream (never urljoin)."""
        url = self.base_url.rstrip("/") + paths.encode(path)
        target, base = urlsplit(url), urlsplit(self.base_url)
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
            raise UnsafeTarget(f"{url!r} leaves upstream {self.name}")
        return f"{url}?{query}" if query else url

    def gateway_location(self, location: str, gateway_base: str, request_url: str) -> str:
        """A ``Location`` as the client must see it.

        It is resolved first, as a browser would resolve it (dot segments, ``%2e``, and a
        backslash read as a slash), against ``request_url``, the upstream URL that was
        requested.  Inside this upstream's base it becomes the gateway's URL for it;
        anywhere else it is left pointing where it points (absolute, so that it cannot
        climb out of ``/gw/<upstream>/`` into the gateway's other paths).
        """
        resolved = urlsplit(urljoin(request_url, paths.as_browsers_read(location)))
        resolved = resolved._replace(path=paths.remove_dot_segments(resolved.path))
        base = urlsplit(self.base_url.rstrip("/"))
        same_origin = (resolved.scheme, resolved.hostname, resolved.port) == (base.scheme, base.hostname, base.port)
        if not same_origin:
            return location
        if not paths.matches_prefix(resolved.path or "/", base.path or "/"):
            return urlunsplit(resolved)
        rest = resolved.path[len(base.path) :]
        return gateway_base + urlunsplit(("", "", rest, resolved.query, resolved.fragment))
