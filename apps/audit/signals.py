"""Signals the audit trail sends to whoever listens, so that it never imports its readers.

``verification_failed(sender, report)``: ``audit_verify``, or a page of ``GET /api/audit/verify``,
found problems (``report`` is an ``apps.audit.sealing.Report``); the alerts app
(``apps.alerts``) turns it into an alert.
"""

from __future__ import annotations

from django.dispatch import Signal

verification_failed = Signal()
