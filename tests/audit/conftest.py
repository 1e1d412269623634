import pytest

from tests.audit.seals import KEY_ID, KEYS


@pytest.fixture
def seal_settings(settings, tmp_path):
    """A seal key ring of one, and a checkpoint file of the test's own (the sealing and archive
    tests use it throughout)."""
    settings.AUDIT_SEAL_KEYS, settings.AUDIT_SEAL_KEY_ID = dict(KEYS), KEY_ID
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    return settings
