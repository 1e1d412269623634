"""A 1 GiB body each way through the deployed gateway: memory of the gateway daemons stays flat.

Measured on the daemons themselves: the growth of their peak resident set (VmHWM)
while the body streams.  The figures are printed and written to
test-artifacts/streaming-memory.txt.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import secrets
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deployed.conftest import BASE_URL, CA_FILE, daemons

pytestmark = pytest.mark.deployed

GIB = 1024**3
BLOCK = secrets.token_bytes(1024 * 1024)
# Generous: Python, Django and the pools already live in the daemon; the body must not.
MAX_GROWTH_KIB = 64 * 1024
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "streaming-memory.txt"


def peak_rss_kib() -> dict[int, int]:
    peaks = {}
    for pid, _ in daemons("auditgate-gw"):
        status = Path(f"/proc/{pid}/status").read_text()
        peaks[pid] = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return peaks


def growth_kib(before: dict[int, int], after: dict[int, int]) -> int:
    assert before.keys() == after.keys(), "a gateway daemon restarted during the test"
    return max(after[pid] - before[pid] for pid in before)


class OneGiB:
    """A request body of 1 GiB produced block by block (never held whole by the client either)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def __iter__(self):
        for _ in range(GIB // len(BLOCK)):
            self.digest.update(BLOCK)
            yield BLOCK


def connection() -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=CA_FILE)
    url = urlsplit(BASE_URL)
    return http.client.HTTPSConnection(url.hostname, url.port or 443, context=context, timeout=120)


def record(line: str) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    with ARTIFACT.open("a") as handle:
        handle.write(line + "\n")
    print(line)


def test_a_1_gib_request_body_streams_in_flat_memory(admin_token, register_upstream):
    name = register_upstream("/", max_request_bytes=2 * GIB, read_timeout=38)
    before = peak_rss_kib()
    body = OneGiB()
    conn = connection()
    conn.request(
        "POST",
        f"/gw/{name}/upload",
        body=iter(body),
        headers={"Authorization": f"Token {admin_token}", "Content-Length": str(GIB),
                 "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    response = conn.getresponse()
    echoed = response.read()
    conn.close()
    assert response.status == 200, echoed[:300]
    assert b'"body_length": %d' % GIB in echoed
    assert body.digest.hexdigest().encode() in echoed
    growth = growth_kib(before, peak_rss_kib())
    record(f"1 GiB request body: peak RSS growth of the gateway daemons {growth} KiB")
    assert growth < MAX_GROWTH_KIB


def test_a_1_gib_response_body_streams_in_flat_memory(admin_token, register_upstream):
    name = register_upstream("/", max_response_bytes=2 * GIB)
    before = peak_rss_kib()
    conn = connection()
    conn.request("GET", f"/gw/{name}/chunked/{GIB}", headers={"Authorization": f"Token {admin_token}"})
    response = conn.getresponse()
    received = 0
    while chunk := response.read(1024 * 1024):
        received += len(chunk)
    conn.close()
    assert (response.status, received) == (200, GIB)
    growth = growth_kib(before, peak_rss_kib())
    record(f"1 GiB response body: peak RSS growth of the gateway daemons {growth} KiB")
    assert growth < MAX_GROWTH_KIB
