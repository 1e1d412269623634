"""Setting up the gateway benchmark and starting its servers: nginx, a private Apache, gunicorn.

Each server is a context manager that stops what it started (by PID or its own control
command).  Their configs are ``bench/fixtures/*.conf.in``, with each name between ``@`` signs filled in here.
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from scenarios import BODY, CODE, DATABASE, FIXTURES, PORT, ROOT, RUN, SYSTEM_PYTHON, USER, VENV, Config


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


def prepare_database(env: dict[str, str]) -> str:
    """Migrate the bench database (creating it if needed) and return a fresh token
    (``bench/fixtures/bench_data.py``: the caller, the upstream, its rule)."""
    manage = [VENV / "bin" / "python", CODE / "site" / "manage.py"]
    run("mysql", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    run(*manage, "migrate", "-v", "0", env=env)
    run(*manage, "collectstatic", "--noinput", "-v", "0", env=env)
    code = (FIXTURES / "bench_data.py").read_text()
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


def vhost_defines(vhost: str, defines: Mapping[str, str]) -> dict[str, str]:
    """apache/vhost.conf's Defines, with this run's ``--define`` levers over them."""
    return dict(re.findall(r"^\s*Define\s+(\S+)\s+(.*?)\s*$", vhost, re.M)) | dict(defines)


def daemon_options(vhost: str, group: str, defines: Mapping[str, str]) -> str:
    """The options of a WSGIDaemonProcess of apache/vhost.conf, Defines expanded, paths ours."""
    match = re.search(rf"^\s*WSGIDaemonProcess\s+{group}\s+((?:.*\\\n)*.*)$", vhost, re.M)
    if not match:
        raise RuntimeError(f"no WSGIDaemonProcess {group} in apache/vhost.conf")
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


def apache_conf(vhost: str, mod_wsgi: str, config: Config) -> str:
    return render(
        "apache.conf.in",
        run=RUN,
        user=USER,
        port=PORT["apache"],
        modules=enabled_modules(),
        mod_wsgi=mod_wsgi,
        server=server_directives(vhost),
        api=daemon_options(vhost, "auditgate-api", config.defines),
        gw=daemon_options(vhost, "auditgate-gw", config.defines),
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
