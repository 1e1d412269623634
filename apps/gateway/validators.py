from __future__ import annotations

import ipaddress
import re
import zoneinfo
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from apps.gateway.choices import HTTP_METHODS


def validate_base_url(value: str) -> None:
    """An upstream base URL: http(s), a host, no credentials, query or fragment.

    Credentials belong in the upstream's injected header (a later issue), never
    in a URL that ends up in logs and API responses.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Use an http:// or https:// URL.", code="invalid_scheme")
    if not parts.hostname:
        raise ValidationError("The URL needs a host.", code="missing_host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("Credentials are not allowed in the URL.", code="userinfo")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValidationError("Query strings and fragments are not allowed.", code="query_or_fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("The port must be between 1 and 65535.", code="invalid_port") from None
    if port == 0:
        raise ValidationError("The port must be between 1 and 65535.", code="invalid_port")


def validate_path_prefix(value: str) -> None:
    if not value.startswith("/"):
        raise ValidationError("A path prefix starts with '/'.", code="invalid_prefix")
    segments = value.split("/")
    if any(segment in (".", "..") for segment in segments):
        raise ValidationError("'.' and '..' segments are not allowed.", code="invalid_prefix")


_TOKEN_CHARS = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def validate_header_name(value: str) -> None:
    if value and not _TOKEN_CHARS.match(value):
        raise ValidationError("Not a valid HTTP header name.", code="invalid_header_name")


def validate_methods(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) and m in HTTP_METHODS for m in value):
        raise ValidationError(f"A list of methods out of {', '.join(HTTP_METHODS)}.", code="invalid_methods")


def validate_cidrs(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("A list of CIDRs, e.g. ['10.0.0.0/8'].", code="invalid_cidr")
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise ValidationError(f"{item!r} is not a CIDR.", code="invalid_cidr") from None


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a time zone name.", code="invalid_timezone") from None


def validate_days(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in value):
        raise ValidationError("A list of weekdays, 0 = Monday ... 6 = Sunday.", code="invalid_days")


# Evidence capture (apps.audit.evidence): what an upstream's captured bodies and headers redact.
MAX_REDACTED_NAMES = 50


def validate_redact_fields(value: object) -> None:
    """JSON object keys (or form field names) to redact at any depth: a list of short names."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_REDACTED_NAMES
        or not all(isinstance(name, str) and 0 < len(name) <= 100 for name in value)
    ):
        raise ValidationError(
            f"A list of at most {MAX_REDACTED_NAMES} field names of 1 to 100 characters.", code="invalid_redact_fields"
        )


def validate_redact_headers(value: object) -> None:
    """Header names to redact: a list of valid HTTP header names."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_REDACTED_NAMES
        or not all(isinstance(name, str) and 0 < len(name) <= 100 and _TOKEN_CHARS.match(name) for name in value)
    ):
        raise ValidationError(
            f"A list of at most {MAX_REDACTED_NAMES} HTTP header names.", code="invalid_redact_headers"
        )
