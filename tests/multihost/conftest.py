"""The multi-host cluster, deployed once per test session from bare hosts by the playbook.

The rig's five hosts (``tests.multihost.rig``) come up, ``ansible/site.yml`` deploys them with the
test-multi inventory, and they are taken down at the end. ``AUDITGATE_MULTIHOST_KEEP=1`` keeps them
for a look, and ``AUDITGATE_MULTIHOST_REUSE=1`` then takes them as they are. Everything runs for
real: HAProxy, Apache with mod_wsgi, MariaDB with GTID replication, over ssh. The tests need root,
like ``make test``; they fail, never skip, without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.multihost.cluster import Cluster, make_vault, playbook, record
from tests.multihost.rig import BRIDGE_ADDRESS, Rig
from tests.upstream import Upstream


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "multihost":
            item.add_marker(pytest.mark.multihost)


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    rig = Rig()
    # AUDITGATE_MULTIHOST_REUSE=1 (with _KEEP=1 before): the hosts as a previous run left them.
    hosts = rig.status()
    if os.environ.get("AUDITGATE_MULTIHOST_REUSE") != "1" or not hosts or not all(h["ssh"] for h in hosts.values()):
        rig.up()
    yield rig
    if os.environ.get("AUDITGATE_MULTIHOST_KEEP") != "1":
        rig.down()


@pytest.fixture(scope="session")
def first_deploy(rig: Rig):
    """One ansible-playbook run from bare hosts to serving."""
    make_vault()
    run = playbook("site.yml", label="first-deploy")
    assert run.returncode == 0, run.output[-4000:]
    record(f"first deploy, bare hosts to serving: {run.seconds:.0f} s")
    return run


@pytest.fixture(scope="session")
def cluster(rig: Rig, first_deploy) -> Cluster:
    return Cluster(rig)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The echo upstream, on this machine's bridge address: the only place the web hosts reach."""
    with Upstream(host=BRIDGE_ADDRESS) as server:
        yield server


@pytest.fixture(scope="session")
def upstream_name(cluster: Cluster, upstream: Upstream) -> str:
    return cluster.register_upstream(upstream.url)
