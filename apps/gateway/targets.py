"""Registration-time checks of an upstream's base URL (the connect-time guard is in upstream_client)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from apps.gateway import ssrf
from apps.gateway.validators import validate_base_url


def check_base_url(base_url: str, *, internal: bool) -> None:
    validate_base_url(base_url)
    if internal:
        return
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ssrf.vetted_addresses(parts.hostname or "", port)
    except ssrf.Unresolvable as exc:
        raise ValidationError(str(exc), code="unresolvable_host") from None
    except ssrf.ForbiddenAddress as exc:
        raise ValidationError(
            f"{exc}. Only an upstream marked internal may point at such an address.", code="ssrf_blocked"
        ) from None
