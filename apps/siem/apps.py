from django.apps import AppConfig


class SiemConfig(AppConfig):
    """Streaming the audit trail to a SIEM: syslog (RFC 5424 over TLS) and a signed webhook."""

    name = "apps.siem"
    label = "siem"
    verbose_name = "SIEM streaming"
