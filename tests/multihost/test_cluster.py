"""Two web hosts behind HAProxy, a MariaDB primary and its replica, deployed from bare hosts by
one ansible-playbook run, then tested while hosts fail, through the balancer.

The tests run in this file's order on one cluster: the last one loses the primary for good.
Load is bounded (a few clients) and stays on the rig's bridge.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost.cluster import (
    REPO,
    VAULT_PASSWORD,
    WEB_HOSTS,
    Cluster,
    Load,
    check_trail,
    playbook,
    record,
)
from tests.multihost.rig import BRIDGE_ADDRESS, HOSTS
from tests.upstream import Upstream

pytestmark = [
    pytest.mark.deployed,
    # The web hosts' self-signed certificates come through the balancer (TLS is passed through).
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

CACHE_BOUND_SECONDS = 1.0  # settings.POLICY_CACHE_SECONDS: a change is seen everywhere within it
SECRETS = ("AUDITGATE_SECRET_KEY", "AUDITGATE_TOKEN_PEPPERS", "AUDITGATE_DB_PASSWORD")


def served_by(cluster: Cluster, upstream: str, request_ids: set[str]) -> set[str]:
    """The web hosts whose processes took these requests (the audit row's worker is host/pid@start)."""
    events = cluster.gateway_events(upstream)
    return {e["worker"].partition("/")[0] for e in events if e["request_id"] in request_ids}


def test_one_playbook_run_takes_bare_hosts_to_serving_through_the_balancer(cluster, upstream_name, first_deploy):
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in first_deploy.recap().values())
    assert cluster.balancer_servers() == {"web1": "UP", "web2": "UP"}
    health = cluster.health()
    assert health == {"http_status": 200, "status": "ok", "replica": {"state": "ok", "lag_seconds": 0}}
    outcomes = [cluster.call(f"/gw/{upstream_name}/hello") for _ in range(12)]
    assert {o.status for o in outcomes} == {200}
    ids = {o.request_id for o in outcomes}
    cluster.wait_until(lambda: len(served_by(cluster, upstream_name, ids)) == 2, "events from both web hosts", 10)
    events = [e for e in cluster.gateway_events(upstream_name) if e["request_id"] in ids]
    # TLS passes through the balancer; the PROXY header gives Apache the caller's own address.
    assert {e["source_ip"] for e in events} == {BRIDGE_ADDRESS}


def test_the_application_account_is_granted_per_web_host_address_on_both_databases(cluster):
    web_addresses = sorted(HOSTS[h] for h in WEB_HOSTS)
    for db in ("db1", "db2"):  # the replica has them by replication, not from the playbook
        hosts = cluster.sql(db, "SELECT Host FROM mysql.user WHERE User = 'auditgate' ORDER BY Host").split()
        assert hosts == web_addresses, db
    assert cluster.sql("db2", "SELECT @@read_only") == "1"


def test_every_web_host_has_the_same_secrets_from_the_vault(cluster):
    def fingerprints(host: str) -> dict[str, str]:
        env = cluster.ssh(host, "cat /etc/auditgate/auditgate.env").stdout
        values = dict(re.findall(r"^(AUDITGATE_\w+)=(.*)$", env, re.M))
        return {name: hashlib.sha256(values[name].encode()).hexdigest() for name in SECRETS}

    assert fingerprints("web1") == fingerprints("web2")
    vault = (REPO / "ansible/inventories/test-multi/group_vars/all/vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;")


def test_a_revoked_token_stops_working_on_every_web_host_within_the_cache_bound(cluster, upstream_name):
    admin = cluster.session()
    created = admin.post(cluster.url("/api/tokens/"), json={"label": "multihost", "upstreams": [upstream_name]})
    assert created.status_code == 201, created.text
    caller = cluster.session(created.json()["token"])
    caller.headers["Connection"] = "close"

    def statuses(host: str) -> set[int]:
        """What each web host answers the token (each process caches it once used)."""
        with cluster.only(host):
            return {caller.get(cluster.url(f"/gw/{upstream_name}/x"), timeout=10).status_code for _ in range(8)}

    assert {host: statuses(host) for host in WEB_HOSTS} == {host: {200} for host in WEB_HOSTS}
    assert admin.post(cluster.url(f"{created.json()['url']}revoke/")).status_code in (200, 204)
    time.sleep(CACHE_BOUND_SECONDS + 0.1)
    assert {host: statuses(host) for host in WEB_HOSTS} == {host: {401} for host in WEB_HOSTS}


def apache_pids(cluster: Cluster, host: str) -> list[int]:
    """Apache's parent and every process it started (workers and the mod_wsgi daemons)."""
    parent = int(cluster.ssh(host, "cat /var/run/apache2/apache2.pid").stdout)
    children = cluster.ssh(host, f"ps -o pid= --ppid {parent}").stdout.split()
    return [parent, *map(int, children)]


def test_killing_web1s_apache_under_traffic_fails_at_most_the_requests_in_flight(cluster, upstream_name):
    concurrency = 6
    load = Load(cluster, f"/gw/{upstream_name}/slow?seconds=0.3", concurrency)
    with load.running():
        time.sleep(3)
        victims = apache_pids(cluster, "web1")
        # A host that dies loses all its processes at once. kill(1) signals one after another,
        # and a worker that outlived its daemon by a moment would answer 502 itself: freeze
        # them all first, then kill them.
        pids = " ".join(map(str, victims))
        cluster.ssh("web1", f"kill -STOP {pids}; kill -9 {pids}")
        killed_at = len(load.outcomes)
        cluster.wait_until(lambda: cluster.balancer_servers()["web1"] == "DOWN", "web1 marked down", 15)
        time.sleep(3)
    counts = check_trail(cluster, upstream_name, load)
    record(f"kill -9 of web1's Apache ({len(victims)} processes) under {concurrency} clients: {counts}; "
           f"{load.describe()}; failures after request {killed_at}")  # fmt: skip
    # Each client had at most one request in flight when web1 died; every later one went to web2.
    assert counts["failed"] <= concurrency, load.describe()
    assert counts["interrupted"] <= concurrency
    assert counts["requests"] - counts["failed"] > 3 * concurrency
    cluster.ssh("web1", "service apache2 start")
    cluster.wait_until(lambda: cluster.balancer_servers()["web1"] == "UP", "web1 back in the balancer", 30)


def test_audit_reads_keep_working_while_the_replica_is_down_and_it_catches_up(cluster, upstream_name):
    reads = cluster.session()
    cluster.ssh("db2", "service mariadb stop")
    try:
        cluster.wait_until(lambda: cluster.health()["replica"]["state"] == "down", "the replica seen down", 20)
        assert cluster.health()["http_status"] == 200, "a replica outage must not take web hosts out"
        written = [cluster.call(f"/gw/{upstream_name}/while-replica-down") for _ in range(6)]
        assert {o.status for o in written} == {200}
        for _ in range(6):  # both web hosts, from the primary
            page = reads.get(cluster.url("/api/audit/events/"), params={"upstream": upstream_name}, timeout=30)
            assert page.status_code == 200, page.text
            assert {o.request_id for o in written} <= {e["request_id"] for e in page.json()["results"]}
    finally:
        cluster.ssh("db2", "service mariadb start")
    newest = int(cluster.sql("db1", "SELECT MAX(id) FROM audit_auditevent"))
    cluster.wait_until(lambda: int(cluster.sql("db2", "SELECT MAX(id) FROM audit_auditevent")) >= newest,
                       "the replica caught up", 60)  # fmt: skip
    cluster.wait_until(lambda: cluster.health()["replica"]["state"] == "ok", "the replica seen healthy", 20)


@pytest.fixture
def next_release(tmp_path: Path) -> Iterator[Path]:
    """A copy of the checkout with one more file: the release the rolling deploy ships."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(".venv", ".venv-tools", ".build", "test-artifacts", ".ruff_cache", ".mypy_cache")
    shutil.copytree(REPO, source, symlinks=True, ignore=ignore)
    (source / "NEXT_RELEASE").write_text("deployed by tests/multihost\n")
    yield source


def current_release(cluster: Cluster, host: str) -> str:
    return cluster.ssh(host, "readlink /srv/auditgate/current").stdout.strip()


def test_a_rolling_deploy_and_a_rollback_under_traffic_drop_no_request(cluster, upstream_name, next_release):
    before = {host: current_release(cluster, host) for host in WEB_HOSTS}
    load = Load(cluster, f"/gw/{upstream_name}/slow?seconds=0.2", 4)
    with load.running():
        deploy = playbook("site.yml", "-e", f"app_source_dir={next_release}", label="rolling-deploy")
    assert deploy.returncode == 0, deploy.output[-4000:]
    counts = check_trail(cluster, upstream_name, load)
    record(f"rolling deploy of a new release under 4 clients: {deploy.seconds:.0f} s, {counts}; {load.describe()}")
    assert load.failed == [], load.describe()
    for host in WEB_HOSTS:
        assert current_release(cluster, host) != before[host]
        cluster.ssh(host, "test -f /srv/auditgate/current/NEXT_RELEASE")

    # The README's rollback command, on every web host, one at a time.
    load = Load(cluster, f"/gw/{upstream_name}/slow?seconds=0.2", 4)
    with load.running():
        rollback = run_make("rollback", label="rollback")
    assert rollback.returncode == 0, rollback.stdout[-4000:]
    counts = check_trail(cluster, upstream_name, load)
    record(f"make rollback under 4 clients: {counts}; {load.describe()}")
    assert load.failed == [], load.describe()
    assert {host: current_release(cluster, host) for host in WEB_HOSTS} == before

    # Back on the checkout's own release: a rerun of the playbook has nothing left to change.
    rerun = playbook("site.yml", label="rerun")
    assert rerun.returncode == 0, rerun.output[-4000:]
    record(f"rerun: {rerun.seconds:.0f} s, {rerun.recap()}")
    assert {host: counts["changed"] for host, counts in rerun.recap().items()} == dict.fromkeys(HOSTS, 0)


def run_make(target: str, *, label: str) -> subprocess.CompletedProcess[str]:
    args = f"--vault-password-file {VAULT_PASSWORD}"
    result = subprocess.run(
        ["make", "--no-print-directory", target, "INVENTORY=ansible/inventories/test-multi", f"ANSIBLE_ARGS={args}"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    (REPO / "test-artifacts" / f"multihost-{label}.log").write_text(result.stdout + result.stderr)
    return result


def test_losing_the_primary_fails_closed_and_the_runbook_promotes_the_replica(cluster, upstream_name,
                                                                             upstream: Upstream):  # fmt: skip
    # Everything so far sealed, and its checkpoints copied by every web host (their witnesses).
    for host in WEB_HOSTS:
        assert cluster.manage(host, "audit_seal", "--all").returncode == 0
    for host in WEB_HOSTS:
        witnessed = cluster.manage(host, "audit_witness")
        assert witnessed.returncode == 0, witnessed.stdout + witnessed.stderr
    newest = cluster.sql("db1", "SELECT MAX(id) FROM audit_auditevent")
    cluster.wait_until(lambda: cluster.sql("db2", "SELECT MAX(id) FROM audit_auditevent") == newest,
                       "the replica has every event", 30)  # fmt: skip

    cluster.ssh("db1", "service mariadb stop")
    seen_before = len(upstream.server.seen)
    refused = [cluster.call(f"/gw/{upstream_name}/while-primary-down") for _ in range(6)]
    assert {(o.status, '"code"' in o.error) for o in refused} == {(503, True)}, refused
    assert len(upstream.server.seen) == seen_before, "a request reached the upstream without its audit record"

    # The README's runbook: name the new primary, then run promote.yml without the lost one.
    promote = playbook("promote.yml", "-e", "auditgate_db_primary=db2", "--limit", "!db1", label="promote")
    assert promote.returncode == 0, promote.output[-4000:]
    record(f"promotion of the replica (runbook): {promote.seconds:.0f} s")
    served = [cluster.call(f"/gw/{upstream_name}/after-promotion") for _ in range(6)]
    assert {o.status for o in served} == {200}
    assert cluster.sql("db2", "SELECT @@read_only") == "0"
    for host in WEB_HOSTS:
        assert cluster.manage(host, "audit_seal", "--all").returncode == 0
    for host in WEB_HOSTS:  # the chain, signatures and each host's witness file agree across the switch
        verified = cluster.manage(host, "audit_witness")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        verified = cluster.manage(host, "audit_verify", "--no-progress")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit trail intact" in verified.stdout
