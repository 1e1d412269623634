from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alert rules evaluated on the audit trail, delivered to a webhook and listed on the dashboard."""

    name = "apps.alerts"
    label = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from apps.alerts.verification import on_verification_failed
        from apps.audit.signals import verification_failed

        verification_failed.connect(on_verification_failed, dispatch_uid="alerts.verification_failed")
