"""Gateway models, one module per concept; import them from here."""

from apps.gateway.models.rules import AccessRule
from apps.gateway.models.tokens import APIToken
from apps.gateway.models.upstreams import Upstream

__all__ = ["APIToken", "AccessRule", "Upstream"]
