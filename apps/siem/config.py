"""The sinks as configured (``SIEM_*`` settings), with a command line's overrides on top."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core import webhooks
from apps.siem import syslog
from apps.siem.sinks import Sink, SyslogSink, WebhookSink

KINDS = ("syslog", "webhook")


@dataclass(frozen=True)
class Overrides:
    syslog_url: str = ""
    syslog_ca_file: str = ""
    syslog_client_cert: str = ""
    syslog_client_key: str = ""
    webhook_url: str = ""
    webhook_ca_file: str = ""
    webhook_secret_file: str = ""  # a file, never the secret itself: a command line is public


def configured_kinds(overrides: Overrides = Overrides()) -> list[str]:
    urls = {
        "syslog": overrides.syslog_url or settings.SIEM_SYSLOG_URL,
        "webhook": overrides.webhook_url or settings.SIEM_WEBHOOK_URL,
    }
    return [kind for kind in KINDS if urls[kind]]


def make_sink(kind: str, overrides: Overrides = Overrides()) -> Sink:
    if kind == "syslog":
        return _syslog(overrides)
    if kind == "webhook":
        return _webhook(overrides)
    raise ImproperlyConfigured(f"no SIEM sink {kind!r}: {', '.join(KINDS)}")


def _syslog(o: Overrides) -> SyslogSink:
    url = o.syslog_url or settings.SIEM_SYSLOG_URL
    if not url:
        raise ImproperlyConfigured("Set AUDITGATE_SIEM_SYSLOG_URL (tls://host:port) or --syslog-url.")
    facility = syslog.FACILITIES.get(settings.SIEM_SYSLOG_FACILITY)
    if facility is None:
        raise ImproperlyConfigured(f"AUDITGATE_SIEM_SYSLOG_FACILITY: one of {', '.join(syslog.FACILITIES)}.")
    try:
        return SyslogSink(
            url=url,
            ca_file=o.syslog_ca_file or settings.SIEM_SYSLOG_CA_FILE,
            client_cert=o.syslog_client_cert or settings.SIEM_SYSLOG_CLIENT_CERT,
            client_key=o.syslog_client_key or settings.SIEM_SYSLOG_CLIENT_KEY,
            facility=facility,
        )
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from error


def _webhook(o: Overrides) -> WebhookSink:
    secret = webhooks.read_secret(o.webhook_secret_file) if o.webhook_secret_file else settings.SIEM_WEBHOOK_SECRET
    hook = webhooks.configured(
        o.webhook_url or settings.SIEM_WEBHOOK_URL, secret, o.webhook_ca_file or settings.SIEM_WEBHOOK_CA_FILE,
        url_setting="AUDITGATE_SIEM_WEBHOOK_URL (or --webhook-url)", key_setting="AUDITGATE_SIEM_WEBHOOK_SECRET",
    )  # fmt: skip
    return WebhookSink(hook)
