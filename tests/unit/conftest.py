import pytest

from tests.unit.seals import KEY


@pytest.fixture
def seal_settings(settings, tmp_path):
    """A seal key, and a checkpoint file of the test's own (the sealing and archive tests use it throughout)."""
    settings.AUDIT_SEAL_KEY = KEY
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    return settings
