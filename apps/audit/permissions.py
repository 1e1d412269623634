from typing import Any

from rest_framework.permissions import BasePermission

AUDITOR_GROUP = "auditor"


def is_auditor(user: Any) -> bool:
    if not (user and user.is_authenticated):
        return False
    return user.is_staff or user.groups.filter(name=AUDITOR_GROUP).exists()


class IsAuditor(BasePermission):
    """Staff, or members of the ``auditor`` group, may read the audit trail."""

    message = "Only auditors and administrators may read the audit trail."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_auditor(request.user)
