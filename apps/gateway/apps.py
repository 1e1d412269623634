from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "apps.gateway"
    label = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from apps.audit import choices as audit
        from apps.gateway.choices import Reason, UpstreamError

        # The trail records these codes; it learns them from here, it never imports the gateway.
        audit.declare(reasons=Reason.values, errors=UpstreamError.values)
