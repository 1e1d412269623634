"""The bench database on "another host" (``gateway_bench.py --remote-db``).

The deployed MariaDB sits on the same machine, a unix socket away: a query costs CPU, hardly
any waiting.  A database on another host adds a network round trip to every query, and the
gateway's queries per request then weigh by their number, not their CPU.  To measure that on
one machine, the bench starts a separate MariaDB inside a network namespace of its own, reached
over a veth pair whose two ends are delayed by ``tc netem`` (a round trip of twice
:data:`DELAY_US`), with the deployed server's durability settings.  Where the kernel has no
``sch_netem`` (this machine kind's: no netem, no loadable modules) the pair is not delayed and
the result says so: the database is then remote over TCP, about 0.1 ms a round trip.

Everything here is the bench's own: the namespace, the veth pair and their qdiscs, the server
(stopped through its socket, or by the PID started here) and its datadir.  The machine's own
MariaDB, its config and the root namespace's ``lo`` are not touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from scenarios import DATABASE, VENV
from servers import read_env, run

NETNS = "agbench-db"
HOST_LINK, DB_LINK = "agb-h", "agb-d"  # the veth ends: the root namespace's, the database's
HOST_ADDRESS, DB_ADDRESS, PREFIX = "10.231.77.1", "10.231.77.2", 30
DB_PORT = 3306
DELAY_US = 250  # each way: a 0.5 ms round trip, a database in the same data centre
# Not under the bench's run dir: that is root:auditgate 0750, and the mysql account cannot
# traverse it.  mysql owns this directory; root reaches the socket anyway.  The datadir goes at
# the end of a run; the error log stays until the next one, for a server that would not start.
BASE = Path("/var/lib/auditgate-bench-remote-db")
DATADIR, SOCKET, PID_FILE, ERROR_LOG = BASE / "data", BASE / "mysqld.sock", BASE / "mysqld.pid", BASE / "error.log"
# The deployed server's settings that shape a write's cost (/etc/mysql/mariadb.conf.d/60-auditgate.cnf
# and its SHOW VARIABLES: every commit flushed, O_DIRECT, 512 MiB redo log), copied here rather
# than queried at each run.  A smaller buffer pool than the deployed 6 GiB: the bench database
# is small, and the memory is the machine's.
SERVER_OPTIONS = (
    "--innodb-flush-log-at-trx-commit=1",
    "--innodb-flush-method=O_DIRECT",
    "--innodb-log-file-size=512M",
    "--innodb-buffer-pool-size=2G",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--max-allowed-packet=64M",
    "--max-connections=4000",
    # The namespace has no DNS: a reverse lookup per new connection would wait for its timeout.
    "--skip-name-resolve",
)
# The round trip as the gateway sees it: SELECT 1 on one connection, as the bench account,
# from the root namespace (the bench venv has mysqlclient).  The first answers warm up.
_RTT_PROBE = """
import os, statistics, time, MySQLdb
e = os.environ
db = MySQLdb.connect(host=e["DB_HOST"], port=int(e["DB_PORT"]), user=e["DB_USER"], password=e["DB_PASSWORD"],
                     database=e["DB_NAME"])
cursor, times = db.cursor(), []
for _ in range(220):
    start = time.perf_counter()
    cursor.execute("SELECT 1")
    cursor.fetchall()
    times.append(time.perf_counter() - start)
print(statistics.median(times[20:]) * 1000)
"""


@dataclass(frozen=True)
class RemoteDb:
    host: str
    port: int
    rtt_ms: float
    delayed: bool

    @property
    def description(self) -> str:
        """What the report says of the database (``result["database"]``): the delay as applied."""
        delay = (f"netem {DELAY_US / 1000:g} ms each way" if self.delayed
                 else "no added delay (this kernel has no sch_netem)")  # fmt: skip
        return f"remote (MariaDB in netns {NETNS}, {self.host}, over TCP), {delay}, measured RTT {self.rtt_ms:.2f} ms"


def quiet(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A command whose output matters only when it fails: then it is in the error."""
    done = run(*command, check=False, capture_output=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def ip(*arguments: str) -> subprocess.CompletedProcess[str]:
    return quiet("ip", *arguments)


def in_netns(*command: str | Path) -> list[str]:
    return ["ip", "netns", "exec", NETNS, *map(str, command)]


def bench_account() -> tuple[str, str]:
    """The user and password the bench connects with: servers.write_env's, read the same way."""
    values = read_env(Path("/etc/auditgate/auditgate.env")) | read_env(Path("/etc/auditgate/test.env"))
    return values["AUDITGATE_DB_USER"], values["AUDITGATE_DB_PASSWORD"]


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- the namespace -------------------------------------------------------------------------


def remove_namespace() -> None:
    """Delete the namespace (which destroys the veth pair with it), and a root end left alone."""
    if Path(f"/run/netns/{NETNS}").exists():
        ip("netns", "del", NETNS)
    if run("ip", "link", "show", HOST_LINK, check=False, capture_output=True).returncode == 0:
        ip("link", "del", HOST_LINK)


def delay(*command_prefix: str, link: str) -> bool:
    """netem on one end of the pair.  False where the kernel has no sch_netem (this machine
    kind's): the run then measures a database over TCP in another namespace, and says so in
    its result (``RemoteDb.description``), never as a delayed one."""
    done = run(*command_prefix, "tc", "qdisc", "add", "dev", link, "root", "netem", "delay", f"{DELAY_US}us",
               check=False, capture_output=True)  # fmt: skip
    if done.returncode:
        print(f"tc netem on {link} failed ({done.stderr.strip()}): no added delay", flush=True)
    return done.returncode == 0


@contextmanager
def namespace() -> Iterator[bool]:
    """The "other host": netns agbench-db, HOST_ADDRESS <-> DB_ADDRESS over veth, both ends delayed."""
    remove_namespace()  # an aborted run's
    try:
        ip("netns", "add", NETNS)
        ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", DB_LINK, "netns", NETNS)
        ip("addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", HOST_LINK)
        ip("link", "set", HOST_LINK, "up")
        ip("-n", NETNS, "addr", "add", f"{DB_ADDRESS}/{PREFIX}", "dev", DB_LINK)
        ip("-n", NETNS, "link", "set", DB_LINK, "up")
        ip("-n", NETNS, "link", "set", "lo", "up")  # the namespace's own lo
        delayed = delay(link=HOST_LINK) and delay("ip", "netns", "exec", NETNS, link=DB_LINK)
        yield delayed
    finally:
        remove_namespace()


# --- the server ----------------------------------------------------------------------------


def admin(*arguments: str) -> subprocess.CompletedProcess[str]:
    """mariadb-admin as root over this server's socket (unix_socket authentication)."""
    return run("mariadb-admin", "--no-defaults", f"--socket={SOCKET}", "--connect-timeout=2", *arguments,
               check=False, capture_output=True)  # fmt: skip


def stop_leftover() -> None:
    """An aborted run's server, stopped through its own socket before its namespace is deleted
    (a process in it keeps it, and the veth pair, alive)."""
    if SOCKET.exists() and admin("ping").returncode == 0:
        pid = int(PID_FILE.read_text()) if PID_FILE.exists() else None
        admin("shutdown")
        deadline = time.monotonic() + 60
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def install_datadir() -> None:
    """A fresh datadir, owned by mysql; root logs in over the socket only (no password anywhere)."""
    shutil.rmtree(DATADIR, ignore_errors=True)
    mysql = pwd.getpwnam("mysql")
    BASE.mkdir(mode=0o750, exist_ok=True)
    os.chown(BASE, mysql.pw_uid, mysql.pw_gid)
    ERROR_LOG.unlink(missing_ok=True)
    quiet("mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={DATADIR}",
          "--auth-root-authentication-method=socket", "--skip-test-db", *SERVER_OPTIONS)  # fmt: skip


def error_log_tail() -> str:
    return "\n".join(ERROR_LOG.read_text(errors="replace").splitlines()[-15:]) if ERROR_LOG.exists() else ""


def wait_until_up(process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the remote mariadbd exited ({process.returncode}):\n{error_log_tail()}")
        if admin("ping").returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the remote mariadbd does not answer on {SOCKET} after {timeout} s:\n{error_log_tail()}")


def stop(process: subprocess.Popen) -> None:
    """Its own shutdown first (a clean InnoDB stop), then SIGTERM, then SIGKILL: by its PID only."""
    if process.poll() is None:
        admin("shutdown")
    for send in (None, signal.SIGTERM, signal.SIGKILL):
        if send is not None and process.poll() is None:
            process.send_signal(send)
        try:
            process.wait(60)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def server() -> Iterator[None]:
    """A separate mariadbd in the namespace, listening on DB_ADDRESS only; its datadir removed after."""
    install_datadir()
    process = subprocess.Popen(  # noqa: S603
        in_netns("mariadbd", "--no-defaults", "--user=mysql", f"--datadir={DATADIR}", f"--socket={SOCKET}",
                 f"--pid-file={PID_FILE}", f"--bind-address={DB_ADDRESS}", f"--port={DB_PORT}",
                 f"--log-error={ERROR_LOG}", *SERVER_OPTIONS),
        # Its own session: a Ctrl-C at the terminal reaches the bench, which stops it in order.
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_up(process)
        yield
    finally:
        stop(process)
        if process.poll() is not None:
            shutil.rmtree(DATADIR, ignore_errors=True)


def create_database() -> None:
    """The bench database and the bench's account, allowed from the root namespace's address only.
    The statements go on stdin: the password stays out of the process list."""
    user, password = bench_account()
    account = f"{sql_string(user)}@{sql_string(HOST_ADDRESS)}"
    sql = (
        f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
        f"CREATE USER {account} IDENTIFIED BY {sql_string(password)};\n"
        f"GRANT ALL ON {DATABASE}.* TO {account};\n"
    )
    quiet("mariadb", "--no-defaults", f"--socket={SOCKET}", input=sql)


def round_trip_ms() -> float:
    """The median SELECT 1 round trip, from the root namespace as the bench account (which checks
    the account too, before Django needs it)."""
    user, password = bench_account()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DB_HOST": DB_ADDRESS, "DB_PORT": str(DB_PORT),
           "DB_USER": user, "DB_PASSWORD": password, "DB_NAME": DATABASE}  # fmt: skip
    return float(quiet(VENV / "bin" / "python", "-c", _RTT_PROBE, env=env).stdout)


@contextmanager
def running() -> Iterator[RemoteDb]:
    """The namespace, the server, the bench database and account; yields where to reach it.
    Everything is undone on the way out, in reverse order, errors and Ctrl-C included."""
    stop_leftover()
    with ExitStack() as stack:
        delayed = stack.enter_context(namespace())
        stack.enter_context(server())
        create_database()
        remote = RemoteDb(DB_ADDRESS, DB_PORT, round_trip_ms(), delayed)
        print(f"database: {remote.description}", flush=True)
        yield remote
