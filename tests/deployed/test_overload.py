"""Overload on the deployed Apache: refused fast and visibly, never a hang.

4x the gateway group's threads keep asking for 30 s for an upstream that takes more than
a third of the group's queue-timeout, so the requests of the fourth round wait for a
thread longer than queue-timeout.  mod_wsgi
discards those at pickup (504) instead of serving them late; nothing waits longer than
queue-timeout plus one upstream answer.  Every refusal is in Apache's access log with its
request id, and `manage.py audit_access_log` lists exactly those as never seen by Django.

The distribution goes to test-artifacts/overload.txt.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.deployed.conftest import ACCESS_LOG, daemon_option, manage
from tests.deployed.load import call, closed_loop, describe, group_capacity, percentiles, record

pytestmark = pytest.mark.deployed

SECONDS = 30
REFUSED = {503, 504}


def test_overload_at_4x_capacity_is_refused_at_the_queue_bound_and_every_refusal_is_logged(register_upstream,
                                                                                            admin_token):  # fmt: skip
    name = register_upstream("/")
    time.sleep(1.1)
    queue_timeout = float(daemon_option("auditgate-gw", "queue-timeout"))
    # The group's queue holds 3x its threads, so 4x the capacity waits rather than being refused
    # unless the upstream is slow: with each answer taking more than a third of queue-timeout,
    # the fourth round of requests has waited too long when a thread picks it up.
    upstream_seconds = round(queue_timeout / 3 + 2)
    # Refused at pickup: after queue-timeout, once a thread frees (at most one upstream answer later).
    bound = queue_timeout + upstream_seconds + 1.0
    concurrency = 4 * group_capacity("GW")
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    path = f"/gw/{name}/slow?seconds={upstream_seconds}"
    outcomes = closed_loop(concurrency, SECONDS, lambda: call(admin_token, path, timeout=90))

    refused = [o for o in outcomes if o.status in REFUSED]
    served = [o for o in outcomes if o.status == 200]
    record("overload.txt", f"overload at 4x ({concurrency} concurrent, upstream {upstream_seconds} s, "
                           f"queue-timeout {queue_timeout:g} s): {describe(outcomes)}")  # fmt: skip
    record("overload.txt", f"  refused: {describe(refused)}")
    record("overload.txt", f"  served: {describe(served)}")
    assert Counter(o.status for o in outcomes).keys() <= {200, *REFUSED}, describe(outcomes)
    assert refused, "4x the capacity of a slow upstream for 30 s must refuse something"
    assert served, "overload must not stop the gateway from serving"
    assert percentiles([o.seconds for o in outcomes])["max"] < bound, describe(outcomes)

    ids = {o.request_id for o in refused}
    assert all(ids), "every refusal carries X-Request-ID"
    deadline = time.monotonic() + 5
    while not ids <= _logged_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ids <= _logged_ids(), "every refused request is in Apache's access log"

    result = manage("audit_access_log", "--prefix", f"/gw/{name}/", "--since", since.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {r["request_id"] for r in report["requests"]} == ids
    record("overload.txt", f"  never seen by Django (audit_access_log): {report['unseen']} {report['by_status']}")


def _logged_ids() -> set[str]:
    return {line.rsplit(" ", 1)[-1] for line in ACCESS_LOG.read_text().splitlines()[-20000:]}
