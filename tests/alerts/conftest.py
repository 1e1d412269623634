from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.alerts import evaluator
from apps.alerts.models import Alert, AlertRule


@pytest.fixture
def evaluate(db) -> Callable[[], list[Alert]]:
    """One evaluation pass (no delivery); returns the alerts that exist after it, oldest first.
    The cursor starts at the newest event when the fixture is made, as on a first run."""
    evaluator.run_pass(None, lock_wait=5)

    def run() -> list[Alert]:
        assert evaluator.run_pass(None, lock_wait=5) is not None
        return list(Alert.objects.order_by("id"))

    return run


@pytest.fixture
def only_rule(db) -> Callable[..., AlertRule]:
    """Disable the default rules and make one of the test's own."""

    def make(**fields) -> AlertRule:
        AlertRule.objects.update(enabled=False)
        return AlertRule.objects.create(**{"name": "under test", **fields})

    return make


@pytest.fixture
def seal_settings(settings, tmp_path):
    """The sealer's key ring and checkpoint file, the test's own (as tests/audit's fixture)."""
    from tests.audit.seals import KEY_ID, KEYS

    settings.AUDIT_SEAL_KEYS, settings.AUDIT_SEAL_KEY_ID = dict(KEYS), KEY_ID
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    return settings
