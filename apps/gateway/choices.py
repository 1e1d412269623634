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


class UpstreamError(models.TextChoices):
    """Why an allowed request did not get a complete upstream answer."""

    UNREACHABLE = "upstream_unreachable"
    TIMEOUT = "upstream_timeout"
    STREAM_BROKEN = "upstream_stream_broken"
    CLIENT_ABORTED = "client_aborted"
