"""The audit dashboard: a page for auditors and administrators.

The page itself holds no data: its script (``static/audit/dashboard.js``, our own, no
chart library) reads ``/api/audit/stats`` with the session and draws the charts as SVG,
so the dashboard shows exactly what the API gives any other client.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.audit import stats
from apps.audit.permissions import is_auditor


@require_safe
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    if not is_auditor(request.user):
        raise PermissionDenied("Only auditors and administrators may see the audit dashboard.")
    return render(request, "audit/dashboard.html", {"buckets": stats.BUCKETS})
