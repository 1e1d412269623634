"""Setting up the gateway benchmark and starting its servers: nginx, a private Apache, gunicorn,
and the upstreams of the chain and slow scenarios (``upstreams.py``).

Each server is a context manager that stops what it started (by PID or its own control
command).  Their configs are ``bench/fixtures/*.conf.in``, with each name between ``@`` signs filled in here.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from scenarios import (
    BODY,
    CODE,
    DATABASE,
    DEFINES,
    FIXTURES,
    MPM,
    NESTED_TIMEOUT,
    PORT,
    ROOT,
    RUN,
    SLOW_DELAY,
    SPOOL,
    SYSTEM_PYTHON,
    USER,
    VENV,
    Config,
)


def run(*command: str | Path, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], check=check, text=True, **kwargs)  # noqa: S603


def render(template: str, **values: object) -> str:
    """A fixture config with each ``@name@`` replaced; a name without a value is an error."""
    return re.sub(r"@(\w+)@", lambda match: str(values[match.group(1)]), (FIXTURES / template).read_text())


# --- set-up --------------------------------------------------------------------------------


def prepare_run_dir() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    os.chown(RUN, 0, grp.getgrnam(USER).gr_gid)
    RUN.chmod(0o750)
    # The daemons' outcome spool (apps.audit.spool), theirs alone, as deployed.
    SPOOL.mkdir(exist_ok=True)
    os.chown(SPOOL, pwd.getpwnam(USER).pw_uid, grp.getgrnam(USER).gr_gid)
    SPOOL.chmod(0o700)


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


def write_env(db_host: str | None = None, db_port: int = 3306) -> Path:
    """The deployed settings, on the bench database as the test account, over plain http;
    ``db_host``: on that server over TCP (``--remote-db``) rather than the local one's socket."""
    values = read_env(Path("/etc/auditgate/auditgate.env"))
    values.update(read_env(Path("/etc/auditgate/test.env")))
    values.update({
        "AUDITGATE_DB_NAME": DATABASE,
        "AUDITGATE_HTTPS": "false",
        "AUDITGATE_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUDITGATE_AUDIT_CHECKPOINT_FILE": "",
        "AUDITGATE_STATIC_ROOT": str(RUN / "static"),
        "AUDITGATE_AUDIT_SPOOL_DIR": str(SPOOL),
    })  # fmt: skip
    if db_host:
        values.update({"AUDITGATE_DB_HOST": db_host, "AUDITGATE_DB_PORT": str(db_port)})
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
        "AUDITGATE_BENCH_CHAIN_UPSTREAM": f"http://127.0.0.1:{PORT['chain_a']}",
        "AUDITGATE_BENCH_SLOW_UPSTREAM": f"http://127.0.0.1:{PORT['slow']}",
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "PYTHONPATH": f"{CODE / 'bench'}:{CODE}:{CODE / 'site'}",
    }


def prepare_database(env: dict[str, str]) -> tuple[str, str]:
    """Migrate the bench database (creating it if needed) and return fresh tokens: the client's,
    and upstream A's for its nested calls (``bench/fixtures/bench_data.py``: callers, upstreams, rules)."""
    manage = [VENV / "bin" / "python", CODE / "site" / "manage.py"]
    run("mysql", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    run(*manage, "migrate", "-v", "0", env=env)
    run(*manage, "collectstatic", "--noinput", "-v", "0", env=env)
    code = (FIXTURES / "bench_data.py").read_text()
    token, chain_token = run(*manage, "shell", "-c", code, env=env, capture_output=True).stdout.split("\n")[-2].split()
    return token, chain_token


def make_certificate() -> None:
    """A throwaway self-signed certificate for 127.0.0.1: the TLS ports of the chain's nested calls."""
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", RUN / "tls.key", "-out", RUN / "tls.crt", capture_output=True)  # fmt: skip
    (RUN / "tls.key").chmod(0o600)
    (RUN / "tls.crt").chmod(0o644)


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


@contextmanager
def nginx() -> Iterator[None]:
    conf = RUN / "nginx.conf"
    conf.write_text(render("nginx.conf.in", run=RUN, body=BODY.replace("\n", "\\n"), **PORT))
    run("nginx", "-c", conf)
    try:
        wait_for_port(PORT["upstream"])
        yield
    finally:
        pid = int((RUN / "nginx.pid").read_text())
        run("nginx", "-c", conf, "-s", "quit")
        wait_for_exit(pid)


def _defines_in(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*Define\s+(\S+)\s+(.*?)\s*$", text, re.M))


def vhost_defines(vhost: str, defines: Mapping[str, str]) -> dict[str, str]:
    """apache/vhost.conf's Defines, the deployed values over them (read now: they may change between
    runs), and this run's ``--define`` levers over those."""
    deployed = _defines_in(DEFINES.read_text()) if DEFINES.exists() else {}
    return _defines_in(vhost) | deployed | dict(defines)


def gateway_shape(config: Config) -> dict:
    """The gateway group's processes and threads for this run (deployed Defines, --define over
    them), its threads in all, and the hop-level groups beside it."""
    vhost = (CODE / "apache" / "vhost.conf").read_text()
    defines = vhost_defines(vhost, config.defines)
    processes, threads = int(defines["AUDITGATE_GW_PROCESSES"]), int(defines["AUDITGATE_GW_THREADS"])
    return {"processes": processes, "threads_per_process": threads, "threads": processes * threads,
            "hop_groups": hop_groups(vhost, config)}  # fmt: skip


def daemon_groups(vhost: str) -> list[str]:
    """The names of apache/vhost.conf's daemon groups that serve requests (the API's and the
    gateway's of each hop level; not the WebSocket relay's), in its order."""
    groups = re.findall(r"^\s*WSGIDaemonProcess\s+(\S+)", vhost, re.M)
    return [group for group in groups if re.fullmatch(r"auditgate-(api|gw[0-9]*)", group)]


def daemon_options(vhost: str, group: str, defines: Mapping[str, str], *, like: str | None = None) -> str:
    """The options of a WSGIDaemonProcess of apache/vhost.conf, Defines expanded, paths ours
    (``like``: those of another group, for a group the vhost does not declare)."""
    match = re.search(rf"^\s*WSGIDaemonProcess\s+{like or group}\s+((?:.*\\\n)*.*)$", vhost, re.M)
    if not match:
        raise RuntimeError(f"no WSGIDaemonProcess {like or group} in apache/vhost.conf")
    options = match.group(1).replace("\\\n", " ")
    expanded = vhost_defines(vhost, defines)
    options = re.sub(r"\$\{(\w+)\}", lambda m: expanded[m.group(1)], options)
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


# The deployed Apache's modules and their settings, but mod_status, the deployed mod_wsgi (the
# bench loads its venv's own build) and TLS's settings (apache.conf.in loads mod_ssl itself).
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


def hop_groups(vhost: str, config: Config) -> list[str]:
    """The gateway groups of the hop levels above 0 (``auditgate-gw1``...: apps.gateway.tracing):
    the vhost's, or ``--hop-groups`` copies of ``auditgate-gw`` when it declares none."""
    declared = [group for group in daemon_groups(vhost) if re.fullmatch(r"auditgate-gw[1-9]", group)]
    return declared or [f"auditgate-gw{level}" for level in range(1, config.hop_groups + 1)]


def daemons(vhost: str, config: Config) -> str:
    """A WSGIDaemonProcess and WSGIImportScript for each daemon group the vhost declares (and --hop-groups)."""
    wsgi = CODE / "bench" / "benchsite" / "wsgi.py"
    groups = dict.fromkeys(daemon_groups(vhost) + hop_groups(vhost, config))
    lines = []
    for group in groups:
        like = None if group in daemon_groups(vhost) else "auditgate-gw"
        lines.append(f"WSGIDaemonProcess {group} {daemon_options(vhost, group, config.defines, like=like)}")
        lines.append(f"WSGIImportScript {wsgi} process-group={group} application-group=%{{GLOBAL}}")
    return "\n".join(lines)


def routing(vhost: str, config: Config) -> str:
    """/gw/ and /bench/ to the gateway group; with hop-level groups, a request whose tracestate
    carries ``auditgate=<level>-`` to the group of that level (the gate then checks the entry)."""
    levels = len(hop_groups(vhost, config))
    if not levels:
        return '<LocationMatch "^/(gw|bench)/">\n    WSGIProcessGroup auditgate-gw\n</LocationMatch>'
    return "\n".join((
        'SetEnvIf Request_URI "^" AUDITGATE_BENCH_GROUP=auditgate-gw',
        f'SetEnvIf tracestate "(^|,)[ \\t]*auditgate=([1-{levels}])-" AUDITGATE_BENCH_GROUP=auditgate-gw$2',
        '<LocationMatch "^/(gw|bench)/">\n    WSGIProcessGroup %{ENV:AUDITGATE_BENCH_GROUP}\n</LocationMatch>',
    ))  # fmt: skip


def apache_conf(vhost: str, mod_wsgi: str, config: Config) -> str:
    return render(
        "apache.conf.in",
        run=RUN,
        user=USER,
        port=PORT["apache"],
        tls_port=PORT["apache_tls"],
        modules=enabled_modules(),
        mod_wsgi=mod_wsgi,
        mpm=f"Include {MPM}" if MPM.exists() else "",
        server=server_directives(vhost),
        daemons=daemons(vhost, config),
        routing=routing(vhost, config),
        wsgi=CODE / "bench" / "benchsite" / "wsgi.py",
        code=CODE,
        access_log="" if config.access_log else "# --no-access-log: ",
    )


@contextmanager
def apache(env: dict[str, str], config: Config) -> Iterator[None]:
    vhost = (CODE / "apache" / "vhost.conf").read_text()
    mod_wsgi = run(VENV / "bin" / "mod_wsgi-express", "module-location", capture_output=True).stdout.strip()
    conf = RUN / "apache.conf"
    conf.write_text(apache_conf(vhost, mod_wsgi, config))
    run("apache2", "-f", conf, "-k", "start", env=env)
    try:
        wait_for_port(PORT["apache"])
        yield
    finally:
        pid = int((RUN / "apache.pid").read_text())
        run("apache2", "-f", conf, "-k", "stop", env=env)
        wait_for_exit(pid)  # apache2 -k stop returns before its children are gone


def chain_upstream_config(chain_token: str) -> Path:
    """Upstream A's routes: where each proxy's nested call goes (over https), and A's token for the gate."""
    tls = f"https://127.0.0.1:{PORT['apache_tls']}"
    config = {
        "port": PORT["chain_a"], "cafile": str(RUN / "tls.crt"), "timeout": NESTED_TIMEOUT,
        "routes": {"gate": {"base": f"{tls}/gw/chain-b", "token": chain_token},
                   "revproxy": {"base": f"{tls}/bench/revproxy"},
                   "nginx": {"base": f"https://127.0.0.1:{PORT['nginx_chain_tls']}"}},
    }  # fmt: skip
    path = RUN / "chain-a.json"
    path.write_text(json.dumps(config))
    os.chown(path, 0, grp.getgrnam(USER).gr_gid)
    path.chmod(0o640)
    return path


@contextmanager
def upstreams(chain_token: str) -> Iterator[None]:
    """Upstream A of the chain and the slow upstream (``upstreams.py``), as the daemon account."""
    script = CODE / "bench" / "upstreams.py"
    commands = {"chain_a": ["chain", chain_upstream_config(chain_token)], "slow": ["slow", PORT["slow"], SLOW_DELAY]}
    started = []
    try:
        for name, arguments in commands.items():
            started.append(subprocess.Popen([SYSTEM_PYTHON, script, *map(str, arguments)], user=USER, group=USER))  # noqa: S603
            wait_for_port(PORT[name])
        yield
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


@contextmanager
def gunicorn(env: dict[str, str], config: Config) -> Iterator[None]:
    """gunicorn's usual production shape: gthread workers, as many processes x threads as the gateway group."""
    defines = vhost_defines((CODE / "apache" / "vhost.conf").read_text(), config.defines)
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
