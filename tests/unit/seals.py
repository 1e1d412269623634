"""What the sealing and archive tests share (their ``seal_settings`` fixture is in conftest)."""

from datetime import timedelta

from django.utils import timezone

KEY = "test-seal-key-0123456789"
# Old enough for the sealer's grace window.
LONG_AGO = timezone.now() - timedelta(hours=1)
