"""Fixed vocabularies of the gateway."""

from django.db import models

# The methods a rule may allow.  CONNECT and TRACE are never proxied.
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")


class Reason(models.TextChoices):
    """Stable, machine-readable reasons for a gateway decision (API ``code`` and audit ``reason``)."""

    ALLOWED = "allowed"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    UPSTREAM_NOT_FOUND = "upstream_not_found"
    UPSTREAM_DISABLED = "upstream_disabled"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_PATH = "invalid_path"
    LENGTH_REQUIRED = "length_required"
    NO_MATCHING_RULE = "no_matching_rule"
    DENIED_BY_RULE = "denied_by_rule"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    SOURCE_IP_NOT_ALLOWED = "source_ip_not_allowed"
    TOKEN_SCOPE = "token_scope"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_REVOKED = "token_revoked"
    REQUEST_TOO_LARGE = "request_too_large"
    LOOP_DETECTED = "loop_detected"
    INVALID_TRACE_CONTEXT = "invalid_trace_context"
    TOO_MANY_HOPS = "too_many_hops"
    UPGRADE_NOT_SUPPORTED = "upgrade_not_supported"
    # The upstream's credential or identity key is stored under a key the secrets ring lacks.
    UPSTREAM_SECRET_UNREADABLE = "upstream_secret_unreadable"


class UpstreamError(models.TextChoices):
    """Why an allowed request did not get a complete upstream answer (API ``code``, audit ``error``)."""

    REFUSED = "upstream_refused"
    DNS_FAILED = "upstream_dns_failed"
    TLS_FAILED = "upstream_tls_failed"
    ADDRESS_BLOCKED = "upstream_address_blocked"
    CONNECT_TIMEOUT = "upstream_connect_timeout"
    READ_TIMEOUT = "upstream_read_timeout"
    TOTAL_TIMEOUT = "upstream_total_timeout"
    INVALID_RESPONSE = "upstream_invalid_response"
    RESET = "upstream_reset"
    UNREACHABLE = "upstream_unreachable"
    TOO_LARGE = "upstream_response_too_large"
    STREAM_BROKEN = "upstream_stream_broken"
    CLIENT_ABORTED = "client_aborted"
    CLIENT_BODY_TIMEOUT = "client_body_timeout"
    # How an open WebSocket (status 101) ended when the gateway closed it (apps.gateway.wsrelay).
    WEBSOCKET_IDLE_TIMEOUT = "websocket_idle_timeout"
    WEBSOCKET_MAX_DURATION = "websocket_max_duration"
    WEBSOCKET_GATEWAY_STOPPED = "websocket_gateway_stopped"
    # A fault of the gateway itself after the attempt was recorded (a bug): the outcome is
    # still written, so that one open attempt never holds the trail's sealing back.
    GATEWAY_ERROR = "gateway_error"


class IntrospectionReason(models.TextChoices):
    """Why ``POST /api/introspect`` answered what it did (the audit event's ``reason``)."""

    ACTIVE = "active"
    INVALID_CLIENT = "invalid_client"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    UNKNOWN_REQUEST = "unknown_request"
    TOKEN_INACTIVE = "token_inactive"


class Subject(models.TextChoices):
    USER = "user"
    GROUP = "group"
    ANY = "any", "any authenticated caller"


class Effect(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"


class PathMatch(models.TextChoices):
    PREFIX = "prefix", "prefix (on segment boundaries)"
    GLOB = "glob", "glob (* within a segment, ** across segments)"


class TokenStatus(models.TextChoices):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DISABLED = "disabled"
