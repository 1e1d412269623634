from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


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
