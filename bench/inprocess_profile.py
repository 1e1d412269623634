"""Where the gateway's own CPU goes: its WSGI callable driven in-process, under cProfile.

Run by ``make bench`` (``gateway_bench.py --profile``, from ``profiling.py``) in the bench venv, with the bench
settings and database and the bench's nginx upstream running; prints one JSON object.
One thread, so process CPU time is the request's CPU time: no Apache, no thread switches.

    python bench/inprocess_profile.py TOKEN [REQUESTS]
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_ROOT / "bench"), str(_ROOT), str(_ROOT / "site")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

# (label, file suffix, function name): the gateway's phases, none nested in another.
PHASES = [
    ("token authentication", "apps/gateway/steps.py", "authenticate"),
    ("policy decision", "apps/gateway/steps.py", "allow"),
    ("audit: attempt (INSERT)", "apps/audit/recording.py", "begin"),
    ("upstream: request and response headers (urllib3)", "apps/gateway/forwarding.py", "open_upstream"),
    ("relay of the body, with its SHA-256", "apps/gateway/relay.py", "__iter__"),
    # The outcome is appended to the spool here; the drainer thread commits it (its CPU is in
    # the process's total, not in cProfile's shares: cProfile sees this thread only).
    ("audit: outcome (appended to the spool)", "apps/audit/recording.py", "finish"),
]


def main() -> None:
    from benchsite.wsgi import application

    token, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    serial = iter(range(10**9))

    def one() -> None:
        path = "/gw/bench/item"
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "REQUEST_URI": path, "QUERY_STRING": "",
            "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1", "HTTP_AUTHORIZATION": f"Token {token}",
            "HTTP_USER_AGENT": "wrk", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr, "UNIQUE_ID": f"bench{time.time_ns()}x{next(serial)}",
        }  # fmt: skip
        statuses: list[str] = []
        body = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        for _ in body:
            pass
        body.close()
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"the gateway answered {statuses[0]}")

    for _ in range(200):  # caches, connections, pools
        one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        one()
    cpu_ms = (time.process_time() - cpu) * 1000 / count
    wall_ms = (time.perf_counter() - wall) * 1000 / count

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(count):
        one()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in stats.values())  # (calls, primitive calls, own, cumulative, callers)
    shares = {}
    for label, suffix, name in PHASES:
        shares[label] = sum(ct for (file, _, func), (_, _, _, ct, _) in stats.items()
                            if func == name and file.endswith(suffix)) / total  # fmt: skip
    shares["Django (handler, middleware, routing, response) and the rest of the view"] = 1 - sum(shares.values())
    print(json.dumps({
        "requests": count, "cpu_ms_per_request": round(cpu_ms, 3), "wall_ms_per_request": round(wall_ms, 3),
        "phases_ms": {label: round(share * cpu_ms, 3) for label, share in shares.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
