#!/usr/bin/env python3
"""Side-by-side benchmark of the gateway path (``make bench``; run as root, loopback only).

Seven scenarios, one machine, one run, interleaved (every scenario once per round, for each
concurrency, then the next round), ``wrk`` as the client:

1. the upstream alone (nginx returning a small body);
2. nginx ``proxy_pass`` to it, with upstream keep-alive: the best-in-class proxy;
3. a bare Django view forwarding with a pooled ``requests`` session: the framework floor;
4. django-revproxy, tuned (pooled, timeouts, no retries): what a Django user reaches for;
5. auditgate's gateway, full path (token, policy, two-phase audit, streaming);
6. the same auditgate under gunicorn (gthread, same processes x threads) behind nginx with
   upstream keep-alive, and bare gunicorn;
7. an API read: the first page of ``/api/audit/events/`` with a filter.

Scenarios 3-5 and 7 run in a private Apache (plain http on 127.0.0.1) whose mod_wsgi daemon
groups, timeouts and keep-alive settings are copied from ``apache/vhost.conf`` at run time,
with the bench site (``bench/benchsite``: auditgate plus the comparison views) on the bench
database ``bench_auditgate``.  The deployed site and its database are not touched.

Prints one table and writes ``bench/results/gateway-<time>.json`` and ``.png``, and
rewrites ``docs/benchmarks.md``.  Everything it starts, it stops (by PID or its own
control command).
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = Path(os.environ.get("AUDITGATE_BENCH_DIR", "/srv/auditgate-bench"))
CODE, VENV = RUN / "code", RUN / "venv"
USER = "auditgate"  # the deployed daemons' account; it reads RUN
SYSTEM_PYTHON = "/usr/bin/python3"
PORT = {"upstream": 18090, "nginx_proxy": 18091, "apache": 18081, "gunicorn": 18083, "nginx_gunicorn": 18093}
BODY = '{"id": 42, "name": "bench item", "tags": ["a", "b", "c"]}\n'
DATABASE = "bench_auditgate"

SCENARIOS = [
    # key, label, url (after http://127.0.0.1:), needs the token
    ("upstream", "1 upstream alone (nginx)", f"{PORT['upstream']}/item", False),
    ("nginx", "2 nginx proxy_pass", f"{PORT['nginx_proxy']}/item", False),
    ("django", "3 Django view + requests (mod_wsgi)", f"{PORT['apache']}/bench/forward/item", False),
    ("revproxy", "4 django-revproxy (mod_wsgi)", f"{PORT['apache']}/bench/revproxy/item", False),
    ("auditgate", "5 auditgate gateway (mod_wsgi)", f"{PORT['apache']}/gw/bench/item", True),
    ("gunicorn_nginx", "6 auditgate, nginx + gunicorn", f"{PORT['nginx_gunicorn']}/gw/bench/item", True),
    ("gunicorn", "6b auditgate, bare gunicorn", f"{PORT['gunicorn']}/gw/bench/item", True),
    ("api", "7 API: audit events, 1st page", f"{PORT['apache']}/api/audit/events/?upstream=bench", True),
]


def run(*command: str | Path, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], check=check, text=True, **kwargs)  # noqa: S603


# --- set-up --------------------------------------------------------------------------------


def install_packages() -> None:
    """wrk and nginx from Debian. A temporary policy-rc.d keeps the packaged nginx service
    from starting (it would fight Apache for port 80): the bench runs its own."""
    installed = run("dpkg-query", "-W", "-f", "${Package} ${Status}\n", check=False, capture_output=True).stdout
    missing = [p for p in ("wrk", "nginx-light") if f"{p} install ok installed" not in installed]
    if not missing:
        return
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
    finally:
        if created:
            policy.unlink()


def copy_code() -> None:
    """The working tree's tracked and new files, where the daemon account can read them."""
    files = run("git", "ls-files", "-z", "-co", "--exclude-standard", cwd=ROOT, capture_output=True).stdout
    if CODE.exists():
        shutil.rmtree(CODE)
    CODE.mkdir(parents=True)
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = CODE / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_venv() -> None:
    requirements = (CODE / "bench" / "requirements.txt").read_text() + (CODE / "requirements.txt").read_text()
    stamp = VENV / ".stamp"
    digest = hashlib.sha256(requirements.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (VENV / "bin" / "python").exists():
        run(SYSTEM_PYTHON, "-m", "venv", VENV)
    run(VENV / "bin" / "pip", "install", "-q", "-r", CODE / "bench" / "requirements.txt")
    stamp.write_text(digest)


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def write_env() -> Path:
    """The deployed settings, on the bench database as the test account, over plain http."""
    values = read_env(Path("/etc/auditgate/auditgate.env"))
    values.update(read_env(Path("/etc/auditgate/test.env")))
    values.update({
        "AUDITGATE_DB_NAME": DATABASE,
        "AUDITGATE_HTTPS": "false",
        "AUDITGATE_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUDITGATE_AUDIT_CHECKPOINT_FILE": "",
        "AUDITGATE_STATIC_ROOT": str(RUN / "static"),
    })  # fmt: skip
    path = RUN / "bench.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chown(path, 0, grp.getgrnam(USER).gr_gid)
    path.chmod(0o640)
    return path


def django_env(env_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AUDITGATE_ENV_FILE": str(env_file),
        "AUDITGATE_BENCH_UPSTREAM": f"http://127.0.0.1:{PORT['upstream']}",
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "PYTHONPATH": f"{CODE / 'bench'}:{CODE}:{CODE / 'site'}",
    }


FIXTURES = """
from datetime import timedelta
from django.contrib.auth.models import Group, User
from django.utils import timezone
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.tokens import create_token
user, _ = User.objects.get_or_create(username="bench-caller")
user.groups.add(Group.objects.get_or_create(name="auditor")[0])
upstream, _ = Upstream.objects.update_or_create(name="bench", defaults={"base_url": "%s", "internal": True})
AccessRule.objects.get_or_create(upstream=upstream, subject="user", user=user, effect="allow", path_pattern="/")
_, token = create_token(user=user, label="bench", expires_at=timezone.now() + timedelta(days=1),
                        upstreams=[upstream], management_api=True)
print(token)
"""


def prepare_database(env: dict[str, str]) -> str:
    """Migrate the bench database (creating it if needed) and return a fresh token."""
    manage = [VENV / "bin" / "python", CODE / "site" / "manage.py"]
    run("mysql", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    run(*manage, "migrate", "-v", "0", env=env)
    run(*manage, "collectstatic", "--noinput", "-v", "0", env=env)
    code = FIXTURES % f"http://127.0.0.1:{PORT['upstream']}"
    return run(*manage, "shell", "-c", code, env=env, capture_output=True).stdout.strip().splitlines()[-1]


# --- servers -------------------------------------------------------------------------------


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_for_exit(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


NGINX_CONF = """
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000;
    upstream item {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    upstream app {{ server 127.0.0.1:{gunicorn}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
    server {{
        listen 127.0.0.1:{nginx_proxy};
        access_log {run}/nginx-proxy-access.log;
        location / {{ proxy_pass http://item; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
    server {{
        listen 127.0.0.1:{nginx_gunicorn};
        access_log {run}/nginx-gunicorn-access.log;
        location / {{
            proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@contextmanager
def nginx() -> Iterator[None]:
    conf = RUN / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=RUN, body=BODY.replace("\n", "\\n"), **PORT))
    run("nginx", "-c", conf)
    try:
        wait_for_port(PORT["upstream"])
        yield
    finally:
        pid = int((RUN / "nginx.pid").read_text())
        run("nginx", "-c", conf, "-s", "quit")
        wait_for_exit(pid)


# --define NAME=VALUE: a vhost Define changed for one run (the shape of the daemon groups);
# --no-access-log: what Apache's access log costs.  Levers, measured one at a time.
DEFINES: dict[str, str] = {}
ACCESS_LOG = True


def vhost_defines(vhost: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*Define\s+(\S+)\s+(.*?)\s*$", vhost, re.M)) | DEFINES


def daemon_options(vhost: str, group: str) -> str:
    """The options of a WSGIDaemonProcess of apache/vhost.conf, Defines expanded, paths ours."""
    match = re.search(rf"^\s*WSGIDaemonProcess\s+{group}\s+((?:.*\\\n)*.*)$", vhost, re.M)
    if not match:
        raise RuntimeError(f"no WSGIDaemonProcess {group} in apache/vhost.conf")
    options = match.group(1).replace("\\\n", " ")
    defines = vhost_defines(vhost)
    options = re.sub(r"\$\{(\w+)\}", lambda m: defines[m.group(1)], options)
    replace = {"python-home": str(VENV), "python-path": f"{CODE / 'bench'}:{CODE}:{CODE / 'site'}",
               "home": str(RUN), "user": USER, "group": USER}  # fmt: skip
    words = []
    for word in options.split():
        key = word.split("=", 1)[0]
        if key == "display-name":  # short: it replaces argv[0] ("apache2") and is cut to its length
            word = f"display-name=({group.removeprefix('auditgate-')})"
        words.append(f"{key}={replace[key]}" if key in replace else word)
    return " ".join(words)


def server_directives(vhost: str) -> str:
    """Timeout and keep-alive settings of apache/vhost.conf's server scope."""
    return "\n".join(re.findall(r"^(?:Timeout|KeepAlive|MaxKeepAliveRequests|KeepAliveTimeout)\s.*$", vhost, re.M))


APACHE_CONF = """
ServerRoot /etc/apache2
ServerName 127.0.0.1
PidFile {run}/apache.pid
Mutex file:{run} default
DefaultRuntimeDir {run}
User {user}
Group {user}
Listen 127.0.0.1:{port}
ErrorLog {run}/apache-error.log
LogLevel warn
{modules}
LoadModule wsgi_module {mod_wsgi}
{server}
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\" %D %{{UNIQUE_ID}}e" auditgate
{access_log}CustomLog {run}/apache-access.log auditgate
WSGIRestrictEmbedded On
WSGIDaemonProcess auditgate-api {api}
WSGIDaemonProcess auditgate-gw {gw}
WSGIImportScript {wsgi} process-group=auditgate-api application-group=%{{GLOBAL}}
WSGIImportScript {wsgi} process-group=auditgate-gw application-group=%{{GLOBAL}}
WSGIApplicationGroup %{{GLOBAL}}
WSGIPassAuthorization On
AllowEncodedSlashes NoDecode
WSGIScriptAlias / {wsgi}
WSGIProcessGroup auditgate-api
# The comparison views share the gateway's group: same shape, one scenario at a time.
<LocationMatch "^/(gw|bench)/">
    WSGIProcessGroup auditgate-gw
</LocationMatch>
<Directory {code}/bench/benchsite>
    Require all granted
</Directory>
"""
# The deployed Apache's modules and their settings, but TLS (the bench is plain http on
# loopback), mod_status, and the deployed mod_wsgi (the bench loads its venv's own build).
_SKIP_MODULES = {"ssl", "status", "wsgi_auditgate"}


def enabled_modules() -> str:
    enabled = Path("/etc/apache2/mods-enabled")
    lines = []
    for load in sorted(enabled.glob("*.load")):
        if load.stem not in _SKIP_MODULES:
            lines.append(f"Include {load}")
            if load.with_suffix(".conf").exists():
                lines.append(f"Include {load.with_suffix('.conf')}")
    return "\n".join(lines)


@contextmanager
def apache(env: dict[str, str]) -> Iterator[None]:
    vhost = (CODE / "apache" / "vhost.conf").read_text()
    mod_wsgi = run(VENV / "bin" / "mod_wsgi-express", "module-location", capture_output=True).stdout.strip()
    modules = enabled_modules()
    conf = RUN / "apache.conf"
    conf.write_text(APACHE_CONF.format(
        run=RUN, user=USER, port=PORT["apache"], modules=modules, mod_wsgi=mod_wsgi,
        server=server_directives(vhost), api=daemon_options(vhost, "auditgate-api"),
        gw=daemon_options(vhost, "auditgate-gw"), wsgi=CODE / "bench" / "benchsite" / "wsgi.py", code=CODE,
        access_log="" if ACCESS_LOG else "# --no-access-log: ",
    ))  # fmt: skip
    run("apache2", "-f", conf, "-k", "start", env=env)
    try:
        wait_for_port(PORT["apache"])
        yield
    finally:
        pid = int((RUN / "apache.pid").read_text())
        run("apache2", "-f", conf, "-k", "stop", env=env)
        wait_for_exit(pid)  # apache2 -k stop returns before its children are gone


@contextmanager
def gunicorn(env: dict[str, str], vhost: str) -> Iterator[None]:
    """gunicorn's usual production shape: gthread workers, as many processes x threads as the gateway group."""
    defines = vhost_defines(vhost)
    process = subprocess.Popen([  # noqa: S603
        VENV / "bin" / "gunicorn", "benchsite.wsgi:application", "--chdir", CODE / "bench",
        "-b", f"127.0.0.1:{PORT['gunicorn']}", "-k", "gthread",
        "-w", defines["AUDITGATE_GW_PROCESSES"], "--threads", defines["AUDITGATE_GW_THREADS"],
        "--user", USER, "--group", USER, "--no-control-socket", "--error-logfile", RUN / "gunicorn-error.log",
    ], env=env)  # fmt: skip
    try:
        wait_for_port(PORT["gunicorn"])
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


# --- measuring -----------------------------------------------------------------------------


def busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    """wrk's latency figures: 91.00us, 1.20ms, 2.00s, 1.02m."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, connections: int, seconds: int, token: str) -> dict[str, float]:
    """One wrk run; a run whose output cannot be read (seen once in a long series) is repeated once."""
    try:
        return _wrk(url, connections, seconds, token)
    except RuntimeError as exc:
        print(f"repeating a run: {exc}", file=sys.stderr, flush=True)
        return _wrk(url, connections, seconds, token)


def _wrk(url: str, connections: int, seconds: int, token: str) -> dict[str, float]:
    headers = ["-H", f"Authorization: Token {token}"] if token else []
    threads = "1" if connections == 1 else "2"
    start = busy_jiffies()
    output = run("wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "5s",
                 *headers, url, capture_output=True).stdout  # fmt: skip
    busy = (busy_jiffies() - start) / os.sysconf("SC_CLK_TCK")
    if "Latency Distribution" not in output or not re.search(r"^\s+99%\s+[\d.]+(us|ms|s|m|h)\s*$", output, re.M):
        raise RuntimeError(f"wrk printed no latencies for {url}:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        # Anchored: "99%" also ends figures like "72.99%" in wrk's thread statistics.
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "cpu_s_per_1000": round(busy / max(requests, 1) * 1000, 3),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def check(url: str, token: str) -> None:
    """Each scenario must answer 200 (and the proxies the upstream's body) before it is timed."""
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    if "/item" in url and body != BODY:
        raise RuntimeError(f"{url} answered {body[:200]!r}, not the upstream's body")


def measure(concurrencies: list[int], rounds: int, seconds: int, token: str) -> dict[str, dict[int, list[dict]]]:
    runs: dict[str, dict[int, list[dict]]] = {key: {c: [] for c in concurrencies} for key, *_ in SCENARIOS}
    for _key, _, url, auth in SCENARIOS:
        check(f"http://127.0.0.1:{url}", token if auth else "")
    for number in range(rounds):
        for connections in concurrencies:
            for key, label, url, auth in SCENARIOS:
                result = wrk(f"http://127.0.0.1:{url}", connections, seconds, token if auth else "")
                runs[key][connections].append(result)
                print(f"round {number + 1}/{rounds} c={connections:<3} {label:<38} {result['rps']:>9.0f} req/s "
                      f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms", flush=True)  # fmt: skip
                time.sleep(1)
    return runs


def serve(token: str) -> None:
    """Keep the servers up until interrupted (SIGINT or SIGTERM); they are stopped on the way out."""
    for _key, label, url, _auth in SCENARIOS:
        print(f"{label:<38} http://127.0.0.1:{url}", flush=True)
    print(f"token: {token}\nserving; interrupt to stop", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with suppress(KeyboardInterrupt):
        signal.pause()


def medians(runs: dict[str, dict[int, list[dict]]]) -> dict[str, dict[int, dict[str, float]]]:
    return {
        key: {c: {m: round(statistics.median(r[m] for r in results), 3) for m in results[0]} | {
            "errors": sum(r["errors"] for r in results), "runs_rps": [r["rps"] for r in results]}
            for c, results in by_c.items()}
        for key, by_c in runs.items()
    }  # fmt: skip


def ratios(table: dict[str, dict[int, dict[str, float]]], concurrencies: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "auditgate" not in table:
        return out
    for c in concurrencies:
        gate = table["auditgate"][c]["rps"]
        for other in ("django", "revproxy", "gunicorn_nginx", "gunicorn"):
            if other in table:
                out[f"5/{other} c={c}"] = round(gate / table[other][c]["rps"], 2)
    if 1 in concurrencies and "upstream" in table:
        out["added p50 ms of 5 over 1, c=1"] = round(
            table["auditgate"][1]["p50_ms"] - table["upstream"][1]["p50_ms"], 3
        )
    return out


# --- profiling (--profile) ------------------------------------------------------------------


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
    result = _wrk(url, connections, seconds, token)
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
    ("token authentication", "_authenticate (apps/gateway/views.py"),
    ("policy decision", "_decide (apps/gateway/views.py"),
    ("audit: attempt INSERT, committed", "GatewayAttempt.begin ("),
    ("database connection health check (ping)", "close_if_health_check_failed ("),
    ("upstream: send, wait, read headers", "open_upstream ("),
    ("relay of the body", "Relay.__iter__ ("),
    ("audit: outcome UPDATE, committed", "GatewayAttempt.finish ("),
]
_IN_A_REQUEST = ("WSGIHandler.__call__ (", "HttpResponseBase.close (", "Relay.")


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
    result = _wrk(f"http://127.0.0.1:{PORT['apache']}/gw/bench/item", 1, seconds, token)
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


def profile(token: str, seconds: int, env: dict[str, str]) -> dict:
    """Where the time goes: CPU by process (auditgate and django-revproxy at c=16), the gateway
    daemons' wall clock by phase (py-spy, c=1), and the gateway's own CPU by phase (in-process)."""
    urls = {key: f"http://127.0.0.1:{url}" for key, _, url, _ in SCENARIOS}
    for key in ("auditgate", "revproxy"):  # started daemons load the app on their first requests
        check(urls[key], token)
        _wrk(urls[key], 16, 2, token)
    found = {"cpu_by_process_c16": {key: cpu_by_process(urls[key], 16, seconds, token if key == "auditgate" else "")
                                    for key in ("auditgate", "revproxy")}}  # fmt: skip
    found["wall_c1"] = wall_profile(token, seconds)
    inprocess = run(VENV / "bin" / "python", CODE / "bench" / "inprocess_profile.py", token, "2000",
                    env=env, capture_output=True).stdout  # fmt: skip
    found["inprocess_cpu"] = json.loads(inprocess.strip().splitlines()[-1])
    return found


def profile_markdown(found: dict) -> str:
    def table(title: str, rows: dict[str, float]) -> list[str]:
        return [f"| {title} | ms per request |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in rows.items())]

    gate, revproxy = found["cpu_by_process_c16"]["auditgate"], found["cpu_by_process_c16"]["revproxy"]
    lines = [
        f"CPU by process at c=16 (auditgate {gate['rps']:.0f} req/s, django-revproxy {revproxy['rps']:.0f} req/s):",
        "", "| Process | auditgate ms/request | django-revproxy ms/request |", "|---|---|---|",
    ]  # fmt: skip
    for role in gate["ms_per_request"]:
        lines.append(f"| {role} | {gate['ms_per_request'][role]:.3f} | {revproxy['ms_per_request'].get(role, 0):.3f} |")
    lines.append(f"| **all** | {sum(gate['ms_per_request'].values()):.3f} | "
                 f"{sum(revproxy['ms_per_request'].values()):.3f} |")  # fmt: skip
    wall = found["wall_c1"]
    lines += [
        "",
        f"The gateway daemons' wall clock at c=1 ({wall['rps']:.0f} req/s, p50 {wall['p50_ms']:.2f} ms; py-spy, "
        f"idle included): {wall['in_daemon_ms']:.2f} ms per request in the daemon, "
        f"{wall['outside_daemon_ms']:.2f} ms outside it (wrk, Apache, the hand-off to the daemon):",
        "",
    ]
    lines += table("Phase (wall clock)", wall["phases_ms"])
    cpu = found["inprocess_cpu"]
    lines += [
        "",
        "The gateway's own CPU, in-process (one thread, no Apache; cProfile's shares of "
        f"{cpu['cpu_ms_per_request']:.3f} ms CPU and {cpu['wall_ms_per_request']:.3f} ms wall per request):",
        "",
    ]
    lines += table("Phase (CPU)", dict(sorted(cpu["phases_ms"].items(), key=lambda item: -item[1])))
    return "\n".join(lines)


# --- reporting -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024

    def version(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
        return (result.stdout + result.stderr).strip().splitlines()[0]

    return {
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": f"{memory} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "apache": version("apache2", "-v").split(": ", 1)[-1],
        "nginx": version("nginx", "-v").split(": ", 1)[-1],
        "mariadb": version("mariadb", "--version"),
        "wrk": version("wrk", "-v").split(" [")[0],
        "python": version(str(VENV / "bin" / "python"), "--version"),
    }


def markdown(result: dict) -> str:
    cs = result["concurrencies"]
    lines = ["| Scenario | " + " | ".join(f"c={c} req/s | p50 / p99 ms | CPU s/1k req" for c in cs) + " |",
             "|---|" + "---|---|---|" * len(cs)]  # fmt: skip
    for key, label, *_ in SCENARIOS:
        cells = []
        for c in cs:
            row = result["table"][key][c]
            errors = f" ({row['errors']} errors)" if row["errors"] else ""
            cells.append(
                f"{row['rps']:.0f}{errors} | {row['p50_ms']:.2f} / {row['p99_ms']:.2f} | {row['cpu_s_per_1000']:.2f}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    """Bars of req/s per scenario and concurrency (runs in the bench venv, which has matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = result["concurrencies"]
    result["table"] = {key: {int(c): row for c, row in by_c.items()} for key, by_c in result["table"].items()}
    labels = [label for _, label, *_ in SCENARIOS]
    figure, axes = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(cs)
    for index, c in enumerate(cs):
        values = [result["table"][key][c]["rps"] for key, *_ in SCENARIOS]
        axes.barh([i + index * width for i in range(len(labels))], values, height=width, label=f"c={c}")
    axes.set_yticks([i + width * (len(cs) - 1) / 2 for i in range(len(labels))], labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("requests/s (median, log scale)")
    axes.set_title(f"auditgate gateway benchmark, {result['when']}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_docs(result: dict) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\n<!-- results -->\n<!-- /results -->\n"
    described = "\n".join(f"- {k}: {v}" for k, v in result["machine"].items())
    ratio_lines = "\n".join(f"| {k} | {v} |" for k, v in result["ratios"].items())
    block = (
        f"<!-- results -->\n## Latest run: {result['when']}\n\n{described}\n\n"
        f"{result['rounds']} interleaved rounds of {result['seconds']} s per scenario and concurrency; medians. "
        "CPU is the whole machine's (client included) per 1000 requests.\n\n"
        f"{markdown(result)}\n\n| Ratio (req/s) | Value |\n|---|---|\n{ratio_lines}\n\n"
        f"![req/s per scenario](benchmarks.png)\n\n### Where the time goes (`--profile`)\n\n"
        f"{profile_markdown(result['profile'])}\n<!-- /results -->"
    )
    text = re.sub(r"<!-- results -->.*<!-- /results -->", lambda _: block, text, flags=re.S)
    docs.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--only", nargs="+", help="scenario keys to run (default: all)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start every server, print the URLs and a token, and wait (for profiling by hand)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile: CPU by process, py-spy on the gateway daemons, the gateway's CPU in-process",
    )
    parser.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a Define of apache/vhost.conf for this run, e.g. AUDITGATE_GW_THREADS=4",
    )
    parser.add_argument("--no-access-log", action="store_true", help="run the private Apache without its access log")
    parser.add_argument("--chart", nargs=2, metavar=("JSON", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chart:
        chart(json.loads(Path(args.chart[0]).read_text()), Path(args.chart[1]))
        return
    if os.geteuid() != 0:
        sys.exit("Run as root (it installs packages and starts servers as the daemon account).")
    if args.only:
        SCENARIOS[:] = [s for s in SCENARIOS if s[0] in args.only]
    global ACCESS_LOG  # set once, before any server starts
    DEFINES.update(define.split("=", 1) for define in args.define)
    ACCESS_LOG = not args.no_access_log
    lever = args.only or args.define or args.no_access_log  # a partial run: the docs keep the full one
    RUN.mkdir(parents=True, exist_ok=True)
    os.chown(RUN, 0, grp.getgrnam(USER).gr_gid)
    RUN.chmod(0o750)
    install_packages()
    copy_code()
    build_venv()
    env = django_env(write_env())
    token = prepare_database(env)
    vhost = (CODE / "apache" / "vhost.conf").read_text()
    with ExitStack() as stack:
        stack.enter_context(nginx())
        stack.enter_context(apache(env))
        stack.enter_context(gunicorn(env, vhost))
        if args.serve:
            serve(token)
            return
        if args.profile:
            found = profile(token, args.seconds, env)
            print(profile_markdown(found))
            return
        runs = measure(args.concurrency, args.rounds, args.seconds, token)
        found = None if lever else profile(token, args.seconds, env)
    table = medians(runs)
    when = time.strftime("%Y-%m-%dT%H:%M:%S")
    result = {"when": when, "machine": machine(), "seconds": args.seconds, "rounds": args.rounds,
              "defines": DEFINES, "access_log": ACCESS_LOG,
              "concurrencies": args.concurrency, "table": table, "ratios": ratios(table, args.concurrency),
              "profile": found, "runs": runs}  # fmt: skip
    print(markdown(result))
    print(json.dumps(result["ratios"], indent=2))
    if found:
        print(profile_markdown(found))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stem = results / f"gateway-{when.replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    run(VENV / "bin" / "python", __file__, "--chart", stem.with_suffix(".json"), stem.with_suffix(".png"))
    if not lever:
        shutil.copy(stem.with_suffix(".png"), ROOT / "docs" / "benchmarks.png")
        write_docs(result)


if __name__ == "__main__":
    main()
