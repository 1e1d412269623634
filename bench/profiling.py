"""Where the gateway's time goes (``--profile``, and after every full run): CPU by process, the
daemons' wall clock by phase (py-spy), and the gateway's own CPU in-process (``inprocess_profile.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from runner import check, wrk_once
from scenarios import BY_KEY, CODE, RUN, VENV
from servers import run


def _processes() -> dict[int, tuple[str, str, int]]:
    """pid -> (command name, command line, CPU ticks so far) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (name, cmdline, int(fields[11]) + int(fields[12]))
    return found


def rss_by_role() -> dict[str, float]:
    """Resident memory (VmRSS, MiB) summed by role: the gateway groups' daemons (every hop level,
    django-revproxy's too: it runs in them), the private Apache's parent and workers, the bench's nginx."""
    nginx_master = int((RUN / "nginx.pid").read_text()) if (RUN / "nginx.pid").exists() else -1
    apache_conf = str(RUN / "apache.conf")
    found: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        name, pid, ppid = status["Name"].strip(), int(entry.name), int(status["PPid"])
        if cmdline.startswith("(gw"):
            role = "gateway daemons"
        elif name == "apache2" and apache_conf in cmdline:
            role = "Apache (parent and workers)"
        elif name == "nginx" and nginx_master in (pid, ppid):
            role = "nginx"
        else:
            continue
        found[role] = found.get(role, 0.0) + int(status.get("VmRSS", "0 kB").split()[0]) / 1024
    return found


def _role(name: str, cmdline: str) -> str:
    if cmdline.startswith("(gw)"):
        return "mod_wsgi gateway daemons (Python)"
    if cmdline.startswith("(api)"):
        return "mod_wsgi API daemons"
    return {"apache2": "Apache workers (HTTP, hand-off to the daemon)", "mariadbd": "MariaDB",
            "nginx": "nginx (the upstream)"}.get(name, "kernel and other")  # fmt: skip


def cpu_by_process(url: str, connections: int, seconds: int, token: str) -> dict[str, float]:
    """CPU milliseconds per request, by process role, during one wrk run (wrk itself included)."""
    before, children = _processes(), os.times()
    result = wrk_once(url, connections, seconds, token)
    after, children_after = _processes(), os.times()
    ticks: dict[str, int] = {}
    for pid, (name, cmdline, total) in after.items():
        used = total - before[pid][2] if pid in before else total
        if used > 0:
            role = _role(name, cmdline)
            ticks[role] = ticks.get(role, 0) + used
    per_request = {role: t / os.sysconf("SC_CLK_TCK") * 1000 / result["requests"] for role, t in ticks.items()}
    wrk_seconds = (children_after.children_user + children_after.children_system
                   - children.children_user - children.children_system)  # fmt: skip
    per_request["wrk (the client)"] = wrk_seconds * 1000 / result["requests"]
    per_request = {role: round(ms, 3) for role, ms in sorted(per_request.items(), key=lambda item: -item[1])}
    return {"rps": result["rps"], "ms_per_request": per_request}


# Phases of the gateway's wall-clock time, by a frame py-spy sees on the stack (the
# innermost one counts: the health-check ping runs inside the first audit write).
WALL_PHASES = [
    ("token authentication", "authenticate (apps/gateway/steps.py"),
    ("policy decision", "allow (apps/gateway/steps.py"),
    ("audit: attempt INSERT, committed", "GatewayAttempt.begin ("),
    ("database connection health check (ping)", "close_if_health_check_failed ("),
    ("upstream: send, wait, read headers", "open_upstream ("),
    ("relay of the body", "Relay.__iter__ ("),
    ("audit: outcome, appended to the spool", "GatewayAttempt.finish ("),
    ("audit: outcomes committed by the drainer thread (not in a request)", "Spool.drain ("),
]
_IN_A_REQUEST = ("WSGIHandler.__call__ (", "GatewayHandler.__call__ (", "HttpResponseBase.close (", "Relay.",
                 "Spool.drain (")  # fmt: skip


def _phase(stack: str) -> str:
    innermost, label = -1, "Django (handler, middleware, routing, response) and the rest of the view"
    for name, marker in WALL_PHASES:
        at = stack.rfind(marker)
        if at > innermost:
            innermost, label = at, name
    return label


def wall_profile(token: str, seconds: int, rate: int = 200) -> dict:
    """py-spy (wall clock, idle included) on the gateway daemons while wrk sends one request at a time."""
    daemons = [pid for pid, (_, cmdline, _) in _processes().items() if cmdline.startswith("(gw)")]
    outputs = [RUN / f"py-spy-{pid}.txt" for pid in daemons]
    spies = [subprocess.Popen([VENV / "bin" / "py-spy", "record", "--pid", str(pid), "--idle", "--nonblocking",  # noqa: S603
                               "--rate", str(rate), "--format", "raw", "--duration", str(seconds + 2), "-o", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid, out in zip(daemons, outputs, strict=True)]  # fmt: skip
    time.sleep(1)
    result = wrk_once(BY_KEY["auditgate"].url, 1, seconds, token)
    for spy in spies:
        spy.wait(60)
    samples: dict[str, int] = {}
    for out in outputs:
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if any(marker in stack for marker in _IN_A_REQUEST):
                samples[_phase(stack)] = samples.get(_phase(stack), 0) + int(count)
    per_request = {name: n / rate * 1000 / result["requests"] for name, n in samples.items()}
    in_daemon = sum(per_request.values())
    return {
        "rps": result["rps"],
        "p50_ms": result["p50_ms"],
        "in_daemon_ms": round(in_daemon, 3),
        "outside_daemon_ms": round(1000 / result["rps"] - in_daemon, 3),
        "phases_ms": {name: round(ms, 3) for name, ms in sorted(per_request.items(), key=lambda item: -item[1])},
    }


# MariaDB's own counters (SHOW GLOBAL STATUS), read around a run: what the audit writes cost it.
DB_COUNTERS = ("Com_insert", "Handler_write", "Com_update", "Com_commit",
               "Innodb_data_fsyncs")  # fmt: skip


def db_counters(mysql: list[str]) -> dict[str, int]:
    names = ", ".join(f"'{name}'" for name in DB_COUNTERS)
    output = run(*mysql, "-N", "-e", f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})",
                 capture_output=True).stdout  # fmt: skip
    return {name: int(value) for name, value in (line.split("\t") for line in output.strip().splitlines())}


def audit_writes(token: str, seconds: int, mysql: list[str], concurrencies: tuple[int, ...] = (1, 16, 64)) -> dict:
    """Per concurrency, from MariaDB's counters around a wrk run of the gateway: attempts per
    INSERT statement (the group commit's batch), outcomes per transaction (the drainer's batch:
    UPDATEs per COMMIT; a batch of one is autocommitted) and redo-log fsyncs per request."""
    found = {}
    for connections in concurrencies:
        before = db_counters(mysql)
        result = wrk_once(BY_KEY["auditgate"].url, connections, seconds, token)
        time.sleep(0.5)  # the drainers' last batch
        delta = {name: value - before[name] for name, value in db_counters(mysql).items()}
        requests = max(result["requests"], 1)
        found[str(connections)] = {
            "rps": result["rps"],
            "attempts_per_insert": round(delta["Handler_write"] / max(delta["Com_insert"], 1), 2),
            "updates_per_commit": round(delta["Com_update"] / max(delta["Com_commit"], 1), 2),
            "commits_per_request": round(delta["Com_commit"] / requests, 3),
            "fsyncs_per_request": round(delta["Innodb_data_fsyncs"] / requests, 3),
            "inserts_per_request": round(delta["Com_insert"] / requests, 3),
            "updates_per_request": round(delta["Com_update"] / requests, 3),
        }
    return found


def profile(token: str, seconds: int, env: dict[str, str], mysql: list[str] | None = None) -> dict:
    """Where the time goes: CPU by process (auditgate and django-revproxy at c=16), the gateway
    daemons' wall clock by phase (py-spy, c=1), and the gateway's own CPU by phase (in-process)."""
    compared = [BY_KEY["auditgate"], BY_KEY["revproxy"]]
    for scenario in compared:  # started daemons load the app on their first requests
        check(scenario, token)
        wrk_once(scenario.url, 16, 2, token)
    found = {"cpu_by_process_c16": {s.key: cpu_by_process(s.url, 16, seconds, s.token(token)) for s in compared}}
    found["wall_c1"] = wall_profile(token, seconds)
    found["audit_writes"] = audit_writes(token, seconds, mysql or ["mysql"])
    inprocess = run(VENV / "bin" / "python", CODE / "bench" / "inprocess_profile.py", token, "2000",
                    env=env, capture_output=True).stdout  # fmt: skip
    found["inprocess_cpu"] = json.loads(inprocess.strip().splitlines()[-1])
    return found
