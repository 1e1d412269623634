"""The date-times the API reads: those that convert into every time zone.

Python's datetimes end on 0001-01-01 and 9999-12-31.  A value within a day of either end
overflows as soon as a time-zone offset is applied to it: turned into UTC for the
database, into a rule's local time by the policy, or moved by a default window (the
stats' last 24 hours).  Every date-time the API reads (body fields, query filters,
cursor positions) must therefore lie one day inside that range; anything else is a 400.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

# No time zone is a day or more away from UTC (Python refuses such offsets).
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
OUT_OF_RANGE = "Out of range: date-times go from 0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z."


def in_range(value: datetime) -> bool:
    """Whether ``value`` (naive: in the site's time zone) lies between ``EARLIEST`` and ``LATEST``."""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=timezone.get_default_timezone())
    try:
        return EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:
        return False
