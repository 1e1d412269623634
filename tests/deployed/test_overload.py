"""Overload on the deployed Apache: refused fast and visibly, never a hang.

3x the gateway group's threads keep asking for 30 s for an upstream that takes a few
seconds, so requests wait for a thread longer than the group's queue-timeout.  mod_wsgi
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
UPSTREAM_SECONDS = 3
REFUSED = {503, 504}


def test_overload_at_3x_capacity_is_refused_fast_and_every_refusal_is_logged(register_upstream, admin_token):
    name = register_upstream("/")
    time.sleep(1.1)
    queue_timeout = float(daemon_option("auditgate-gw", "queue-timeout"))
    # Refused at pickup: after queue-timeout, once a thread frees (at most one upstream answer later).
    bound = queue_timeout + UPSTREAM_SECONDS + 1.0
    concurrency = 3 * group_capacity("GW")
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    path = f"/gw/{name}/slow?seconds={UPSTREAM_SECONDS}"
    outcomes = closed_loop(concurrency, SECONDS, lambda: call(admin_token, path, timeout=60))

    refused = [o for o in outcomes if o.status in REFUSED]
    served = [o for o in outcomes if o.status == 200]
    record("overload.txt", f"overload at 3x ({concurrency} concurrent, upstream {UPSTREAM_SECONDS} s, "
                           f"queue-timeout {queue_timeout:g} s): {describe(outcomes)}")  # fmt: skip
    record("overload.txt", f"  refused: {describe(refused)}")
    record("overload.txt", f"  served: {describe(served)}")
    assert Counter(o.status for o in outcomes).keys() <= {200, *REFUSED}, describe(outcomes)
    assert refused, "3x the capacity for 30 s must refuse something"
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
