"""Contract fuzzing: schemathesis against /api/schema/ of the deployed system, every check
(including the stateful links and the unauthenticated and invalid-auth checks), as an
administrator, as a user without privileges and without a token: 0 failures.

Bounded: ``AUDITGATE_FUZZ_EXAMPLES`` examples per operation (default 25) and a fixed seed
unless ``AUDITGATE_FUZZ_SEED`` says otherwise.  Reports (JUnit, and the failures as a
pytest file) go to ``test-artifacts/schemathesis-<caller>/``.  ``fuzz/schemathesis.toml``
holds the one configured exception and why; ``fuzz/hooks.py`` keeps the fuzzer's writes
off the objects that existed before it ran, and sends what the fuzzer's defaults never reach
(issue 12: 0 failures had hidden three 500s): date-times that overflow once an offset applies,
tampered cursors and JSON nested 10,000 levels deep, as fixed cases of every operation and
mixed into the random ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deployed.conftest import ARTIFACTS, BASE_URL, CA_FILE, fresh_token

pytestmark = pytest.mark.deployed

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
EXAMPLES = os.environ.get("AUDITGATE_FUZZ_EXAMPLES", "25")
SEED = os.environ.get("AUDITGATE_FUZZ_SEED", "7")
ADMIN_USER = os.environ.get("AUDITGATE_TEST_ADMIN_USER", "admin")


def existing_ids(admin, collection: str) -> list[str]:
    """Ids of every object of a collection, following the pages."""
    ids, url = [], f"{BASE_URL}/api/{collection}/?page_size=500"
    while url:
        page = admin.get(url, timeout=30)
        assert page.status_code == 200, page.text
        ids += [str(item["id"]) for item in page.json()["results"]]
        url = page.json()["next"]
    return ids


@pytest.fixture(scope="module")
def fuzz_tokens() -> dict[str, str | None]:
    """Fresh one-day tokens: the admin's own token file is never handed to the fuzzer."""
    return {"admin": fresh_token(ADMIN_USER), "user": fresh_token("fuzz-user"), "anonymous": None}


@pytest.fixture(scope="module")
def protected(admin, fuzz_tokens) -> str:
    # Listed after the fuzzing tokens exist, so that the fuzzer cannot revoke its own.
    listed = ";".join(f"{kind}:{','.join(existing_ids(admin, kind))}" for kind in ("tokens", "upstreams", "rules"))
    # The alert rules (/api/alerts/rules/{id}/: the hooks read its kind as "alerts").
    return f"{listed};alerts:{','.join(existing_ids(admin, 'alerts/rules'))}"


@pytest.fixture(scope="module")
def created_by_fuzzing(admin):
    """Upstreams (and with them their rules) and alert rules the fuzzer created are deleted afterwards."""
    before = {collection: set(existing_ids(admin, collection)) for collection in ("upstreams", "alerts/rules")}
    yield
    for collection, existed in before.items():
        for ident in set(existing_ids(admin, collection)) - existed:
            assert admin.delete(f"{BASE_URL}/api/{collection}/{ident}/", timeout=30).status_code == 204


def schemathesis(caller: str, token: str | None, protected: str) -> subprocess.CompletedProcess[str]:
    report_dir = ARTIFACTS / f"schemathesis-{caller}"
    command = [
        str(Path(sys.executable).with_name("st")), "--no-color", "--config-file", str(FUZZ_DIR / "schemathesis.toml"),
        "run", f"{BASE_URL}/api/schema/", "--checks", "all", "--max-examples", EXAMPLES, "--seed", SEED,
        "--tls-verify", CA_FILE if BASE_URL.startswith("https:") else "true", "--request-timeout", "30",
        "--report", "junit,pytest", "--report-dir", str(report_dir),
    ]  # fmt: skip
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(FUZZ_DIR / "hooks.py"), "AUDITGATE_FUZZ_PROTECTED": protected}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)  # loopback only
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.parametrize("caller", ["admin", "user", "anonymous"])
def test_the_api_keeps_its_contract_under_fuzzing(caller, fuzz_tokens, protected, created_by_fuzzing):
    result = schemathesis(caller, fuzz_tokens[caller], protected)
    (ARTIFACTS / f"schemathesis-{caller}").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"schemathesis-{caller}" / "output.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Test cases:" in result.stdout  # it did run
