"""Signals the shared code sends; the audit app records them (``AuditConfig.ready``)."""

from django.dispatch import Signal

# A management API request refused for its token's scope: (request, code, token_key_id, status).
api_refused = Signal()
