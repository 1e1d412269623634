from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from apps.core.signals import api_refused

        api_refused.connect(_record_refusal, dispatch_uid="audit.api_refused")


def _record_refusal(
    sender: object, request: object, code: str, token_key_id: str, status: int, **kwargs: object
) -> None:
    from apps.audit import events

    events.record_auth_failure(request, code, token_key_id=token_key_id, status=status)
