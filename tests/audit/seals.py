"""What the sealing and archive tests share (their ``seal_settings`` fixture is in conftest)."""

from datetime import timedelta

from django.utils import timezone

KEY = "test-seal-key-0123456789"
KEY_ID = "1"
KEYS = {KEY_ID: KEY}  # the seal key ring, as settings.AUDIT_SEAL_KEYS holds it
# The key a rotation adds and makes current.
NEW_KEY = "test-seal-key-two-0123456789"
NEW_KEY_ID = "2"
BOTH_KEYS = {KEY_ID: KEY, NEW_KEY_ID: NEW_KEY}
# Old enough for the sealer's grace window.
LONG_AGO = timezone.now() - timedelta(hours=1)


def rotate(settings) -> None:
    """What a deploy after a key rotation does: a new key in the ring, made current."""
    settings.AUDIT_SEAL_KEYS, settings.AUDIT_SEAL_KEY_ID = dict(BOTH_KEYS), NEW_KEY_ID
