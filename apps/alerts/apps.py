from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alert rules evaluated on the audit trail, delivered to a webhook and listed on the dashboard."""

    name = "apps.alerts"
    label = "alerts"
    verbose_name = "Alerts"
