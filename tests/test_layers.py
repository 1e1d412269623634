"""The layout's import rules (README, "Layout"): the layers run one way,
core <- audit <- gateway <- site, with the trail's consumers (siem, alerts) above the trail and
beside each other.  The trail never depends on what it audits or on who reads it, and no app
depends on the site's configuration package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[1] / "apps"
# package -> import prefixes its modules may never use
CONSUMERS = ("apps.siem", "apps.alerts")
FORBIDDEN = {
    "core": ("auditgate", "apps.audit", "apps.gateway", *CONSUMERS),
    "audit": ("auditgate", "apps.gateway", *CONSUMERS),
    "gateway": ("auditgate", *CONSUMERS),
    "siem": ("auditgate", "apps.gateway", "apps.alerts"),
    "alerts": ("auditgate", "apps.siem"),
}


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_apps_import_only_downward(package):
    wrong = [
        f"{path.relative_to(APPS.parent)}: {name}"
        for path in sorted((APPS / package).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN[package])
    ]
    assert wrong == []
