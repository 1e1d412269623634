"""Django's MySQL/MariaDB backend (mysqlclient), pinging a persistent connection only when
it has been idle.

``CONN_HEALTH_CHECKS`` pings the server before the first query of every request, so that a
connection left dead by a MariaDB restart is replaced instead of failing.  On a gateway
request that ping is a third database round trip, a quarter of a millisecond here (py-spy,
docs/benchmarks.md).  A connection that answered a request without error less than
``HEALTH_CHECK_AFTER_IDLE`` seconds ago is taken as alive: a restart takes longer than that,
so the connections it kills are idle ones, and those are still pinged.  If one is missed (a
restart that strikes between two requests of a thread), its query fails, the gateway answers
a retryable 503 without forwarding, and Django replaces the connection at the end of that
request, as it does for any connection that raised an error.
"""

from __future__ import annotations

import time

from django.db.backends.mysql import base

# Seconds since the last request that used the connection without error.
HEALTH_CHECK_AFTER_IDLE = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _answered_at = float("-inf")
    health_check_done: bool  # set by Django's base wrapper

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and not self.health_check_done
            and time.monotonic() - self._answered_at < HEALTH_CHECK_AFTER_IDLE
        ):
            self.health_check_done = True  # it answered moments ago
            return
        super().close_if_health_check_failed()

    def close_if_unusable_or_obsolete(self) -> None:
        # Called as each request starts and ends.  At the end, health_check_done tells that
        # this request used the connection, errors_occurred that something failed on it.
        answered = self.health_check_done and not self.errors_occurred
        super().close_if_unusable_or_obsolete()
        if answered and self.connection is not None:
            self._answered_at = time.monotonic()
