"""Several Debian 12 hosts on this machine, reachable only over ssh, for multi-host tests.

Each host is a network namespace ``agmh-<name>`` (a veth into the bridge ``agmh0``, which holds
``10.231.78.1/24`` in the root namespace) plus its own PID, mount, UTS and IPC namespaces, an
overlayfs root over one cached Debian 12 base built with mmdebstrap, and ``tini`` as PID 1 running
sshd. apt inside the hosts goes through ``apt_proxy.py`` on the bridge address (only the Debian
mirror this machine's own apt uses, plain HTTP, a .deb cache). There is no NAT and
``ip_forward`` stays 0: nothing leaves the bridge except through that proxy. Dangerous
capabilities are dropped from the bounding set before anything starts in a host. This prevents
accidents; it is not a security boundary.

    python -m tests.multihost.rig up|down|status|ssh HOST [CMD...]

Everything needs root. Names made here start with ``agmh``; ``down()`` removes only those.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

RIG_VERSION = "3"
PREFIX = "agmh"

HOSTS: dict[str, str] = {
    "lb1": "10.231.78.10",
    "web1": "10.231.78.11",
    "web2": "10.231.78.12",
    "db1": "10.231.78.21",
    "db2": "10.231.78.22",
}
NETWORK = ipaddress.IPv4Network("10.231.78.0/24")
BRIDGE = f"{PREFIX}0"
BRIDGE_ADDRESS = "10.231.78.1"
PROXY_PORT = 3142

STATE_DIR = Path("/var/lib/auditgate-multihost")
CACHE_DIR = Path("/var/cache/auditgate-multihost")
DEB_CACHE_DIR = CACHE_DIR / "debs"

SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*")))
BASE_PACKAGES: tuple[str, ...] = (
    "ca-certificates",
    "cron",
    "iproute2",
    "openssh-server",
    "procps",
    "python3",
    "python3-apt",
    "sudo",
    "tini",
)

# Dropped from the bounding set before any process of a host starts (the hosts share the kernel).
DROPPED_CAPABILITIES: tuple[str, ...] = (
    "sys_time",
    "sys_module",
    "sys_rawio",
    "sys_boot",
    "syslog",
    "mknod",
    "bpf",
    "perfmon",
    "audit_control",
    "wake_alarm",
    "block_suspend",
    "mac_admin",
    "mac_override",
)

SSH_OPTIONS: tuple[str, ...] = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
)

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")  # "agmh-" + name fits IFNAMSIZ (15)

# Run by tini (PID 1 of the host). Services started later through `service` or their init
# scripts daemonise and are reparented to tini, which reaps them.
HOST_INIT = f"""#!/bin/sh
# {PREFIX} rig host init: fresh host keys, then sshd and cron through their init scripts.
export PATH={HOST_PATH}
ssh-keygen -A
mkdir -p /run/sshd /run/lock
chmod 0755 /run/sshd
chmod 1777 /run/lock
service cron start || echo "agmh-init: cron did not start" >&2
service ssh start || echo "agmh-init: ssh did not start" >&2
echo "agmh-init: ready"
exec sleep infinity
"""


class RigError(RuntimeError):
    pass


def controller_mirrors() -> tuple[str, str]:
    """The Debian archive and security URLs this machine's own apt uses (plain http): the hosts
    use the same mirror, through the proxy, so the repository names none."""
    uris: list[str] = []
    for path in APT_SOURCES:
        if path.is_file():
            text = path.read_text(errors="replace")
            uris += re.findall(r"^URIs:\s*(http://\S+)", text, re.M)  # deb822 .sources
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(http://\S+)", text, re.M)  # one-line format
    archive = next((u.rstrip("/") for u in uris if u.rstrip("/").endswith("/debian")), None)
    security = next((u.rstrip("/") for u in uris if u.rstrip("/").endswith("/debian-security")), None)
    if not archive or not security:
        raise RigError("this machine's apt sources name no plain-http Debian archive and security mirror")
    return archive, security


def _require_root() -> None:
    if os.geteuid() != 0:
        raise RigError("the multi-host rig needs root (network and mount namespaces, overlayfs, pivot_root)")


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), check=False, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise RigError(f"{shlex.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _read_pid_file(path: Path) -> tuple[int, str] | None:
    try:
        pid_text, start = path.read_text().split()
        return int(pid_text), start
    except (FileNotFoundError, ValueError):
        return None


def _write_pid_file(path: Path, pid: int) -> None:
    start = _start_time(pid)
    if start is None:
        raise RigError(f"process {pid} exited before it could be recorded in {path}")
    path.write_text(f"{pid} {start}\n")


def _alive(record: tuple[int, str] | None) -> bool:
    return record is not None and _start_time(record[0]) == record[1]


def _kill_recorded(path: Path, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    """Signal the process recorded in path (only if it is still the same process) and wait for it."""
    record = _read_pid_file(path)
    if _alive(record):
        assert record is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(record[0], sig)
        deadline = time.monotonic() + wait
        while _alive(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(record) and sig != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record[0], signal.SIGKILL)
            while _alive(record) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
    path.unlink(missing_ok=True)


def mac_for(address: str, side: int = 0x4E) -> str:
    """A fixed MAC per address: 02:a6:4e:4e:<octet 3>:<octet 4> (host side uses another third byte)."""
    octets = [int(o) for o in address.split(".")]
    return f"02:a6:{side:02x}:4e:{octets[2]:02x}:{octets[3]:02x}"


def base_hash() -> str:
    text = "\n".join([RIG_VERSION, SUITE, "minbase", *sorted(BASE_PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_dir() -> Path:
    return CACHE_DIR / f"base-{base_hash()}"


def base_rootfs() -> Path:
    return base_dir() / "rootfs"


def ensure_mmdebstrap() -> str:
    path = shutil.which("mmdebstrap")
    if path:
        return path
    print("rig: installing mmdebstrap with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"], check=True, env=env)
    path = shutil.which("mmdebstrap")
    if not path:
        raise RigError("mmdebstrap is still missing after apt-get install")
    return path


def _customise_base(root: Path) -> None:
    mirror, security = controller_mirrors()
    # Without an init system, invoke-rc.d blocks service starts unless a policy-rc.d allows them:
    # let packages start their services on install, as on a real server.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# agmh rig: allow every service action (no init system here)\nexit 0\n")
    policy.chmod(0o755)
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n"
    )
    for extra in (root / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    (root / "etc/apt/apt.conf.d/01agmh-proxy").write_text(
        f'Acquire::http::Proxy "http://{BRIDGE_ADDRESS}:{PROXY_PORT}";\nAcquire::Check-Valid-Until "false";\n'
    )
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d/agmh.conf").write_text(
        "# agmh rig: root logs in with the rig's key only\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUseDNS no\n"
    )
    # No DNS inside: names come from /etc/hosts; an empty resolv.conf fails fast on loopback.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("# agmh rig: no DNS; names are in /etc/hosts\n")
    (root / "etc/hostname").write_text("agmh-base\n")
    (root / "etc/machine-id").write_text("")
    # A bare host has no package lists, and Ansible's apt (cache_valid_time) takes the lists
    # directory's mtime for the last update: make it old, or the first install finds nothing.
    lists = root / "var/lib/apt/lists"
    for entry in lists.glob("*"):
        if entry.is_file():
            entry.unlink()
    (root / "var/lib/apt/periodic/update-success-stamp").unlink(missing_ok=True)
    os.utime(lists, (0, 0))


def ensure_base() -> Path:
    """Build the Debian 12 base once (into a temporary name, renamed when complete)."""
    final = base_dir()
    if (final / "rootfs/usr/bin/tini").exists():
        return final / "rootfs"
    mmdebstrap = ensure_mmdebstrap()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_DIR.glob("base-*.tmp-*"):
        if not _alive(_read_pid_file(stale / "builder.pid")):
            shutil.rmtree(stale)
    tmp = CACHE_DIR / f"{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    _write_pid_file(tmp / "builder.pid", os.getpid())
    (tmp / "packages.txt").write_text("\n".join(sorted(BASE_PACKAGES)) + "\n")
    started = time.monotonic()
    print(f"rig: building the base {final} with mmdebstrap (once)", file=sys.stderr)
    mirror, security = controller_mirrors()
    cmd = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        mmdebstrap,
        "--mode=root",
        "--variant=minbase",
        "--include=" + ",".join(sorted(BASE_PACKAGES)),
        SUITE,
        str(tmp / "rootfs"),
        f"deb {mirror} {SUITE} main",
        f"deb {mirror} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]
    with (tmp / "build.log").open("w") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise RigError(f"mmdebstrap failed ({result.returncode}); see {tmp / 'build.log'}")
    _customise_base(tmp / "rootfs")
    (tmp / "builder.pid").unlink()
    (tmp / "built.txt").write_text(f"rig {RIG_VERSION}, {time.monotonic() - started:.1f} s\n")
    os.rename(tmp, final)
    for other in CACHE_DIR.glob("base-*"):
        if other != final and ".tmp-" not in other.name and other.is_dir():
            shutil.rmtree(other)  # bases of earlier rig versions or package lists
    print(f"rig: base built in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return final / "rootfs"


def _setup_script(name: str, hostdir: Path, lower: Path) -> str:
    """Run as PID 1 of the host's new namespaces, before pivot_root (with the controller's tools)."""
    q = shlex.quote
    root = hostdir / "root"
    ro_proc = " ".join(q(str(root / "proc" / p)) for p in ("sys", "bus", "fs", "irq", "sysrq-trigger"))
    devices = " ".join(("null", "zero", "full", "random", "urandom", "tty"))
    return f"""set -eu
R={q(str(root))}
H={q(str(hostdir))}
# Nothing mounted here may propagate back to the controller's namespace.
mount --make-rprivate /
mount -t overlay {q(PREFIX + "-" + name)} -o lowerdir={q(str(lower))},upperdir="$H/upper",workdir="$H/work" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for p in {ro_proc}; do
    if [ -e "$p" ]; then mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"; fi
done
mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
mount -o remount,bind,rw "$R/proc/sys/net"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o nosuid,noexec,mode=0755,size=1m {PREFIX}-dev "$R/dev"
for d in {devices}; do
    : > "$R/dev/$d"
    mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -m 0755 "$R/dev/pts"
mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m {PREFIX}-shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755,size=256m {PREFIX}-run "$R/run"
hostname {q(name)}
echo {q(name)} > "$R/etc/hostname"
cat "$H/hosts" > "$R/etc/hosts"
tr -d - < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*
install -d -m 0700 "$R/root/.ssh"
install -m 0600 "$H/authorized_keys" "$R/root/.ssh/authorized_keys"
install -m 0755 "$H/init" "$R/usr/local/sbin/agmh-init"
mkdir -p "$R/.agmh-oldroot"
cd "$R"
pivot_root . .agmh-oldroot
cd /
umount -l /.agmh-oldroot
rmdir /.agmh-oldroot
exec env -i PATH={HOST_PATH} HOME=/root LANG=C.UTF-8 /usr/bin/tini -- /usr/local/sbin/agmh-init
"""


class Rig:
    """The multi-host rig. State lives under ``state_dir``; the base and the .deb cache under CACHE_DIR."""

    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.state_dir = state_dir
        self.hosts_dir = state_dir / "hosts"
        self.key = state_dir / "id_ed25519"
        self._children: list[subprocess.Popen[bytes]] = []

    # -- public API ---------------------------------------------------------------------------
    @property
    def hosts(self) -> dict[str, str]:
        """The hosts of the running (or last) rig, name -> address; HOSTS when none was recorded."""
        try:
            recorded = json.loads((self.state_dir / "hosts.json").read_text())
        except (FileNotFoundError, ValueError):
            return dict(HOSTS)
        return {str(k): str(v) for k, v in recorded.items()}

    def address(self, host: str) -> str:
        try:
            return self.hosts[host]
        except KeyError:
            raise RigError(f"unknown host {host!r}; known: {', '.join(self.hosts)}") from None

    def ssh_args(self) -> list[str]:
        """ssh options (key included) to reach any rig host as root: ``ssh *args root@ADDRESS CMD``."""
        return ["-i", str(self.key), *SSH_OPTIONS]

    def ssh(
        self, host: str, command: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host as root over ssh; text output captured."""
        _require_root()
        args = ["ssh", *self.ssh_args(), f"root@{self.address(host)}", command]
        return subprocess.run(args, check=check, text=True, capture_output=True, timeout=timeout)

    def inventory_vars(self) -> dict[str, str]:
        """Variables for an Ansible inventory's ``all.vars``: ssh as root with the rig key, nothing local."""
        return {
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": shlex.join(SSH_OPTIONS),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(self, groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, object]:
        """A whole YAML/JSON-able inventory: every host with ansible_host and ansible_connection=ssh
        as host variables (they outrank a play's ``connection:``), optional groups, all.vars above."""
        hosts = {name: {"ansible_host": addr, "ansible_connection": "ssh"} for name, addr in self.hosts.items()}
        inv: dict[str, object] = {"hosts": hosts, "vars": self.inventory_vars()}
        if groups:
            inv["children"] = {group: {"hosts": {h: {} for h in members}} for group, members in groups.items()}
        return {"all": inv}

    def up(self, hosts: Mapping[str, str] = HOSTS, timeout: float = 120.0) -> None:
        """Bring the rig up from scratch (leftovers of an earlier run are removed first)."""
        _require_root()
        hosts = dict(hosts)
        self._validate(hosts)
        with self._lock():
            self._teardown()
            lower = ensure_base()
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ensure_key()
            (self.state_dir / "hosts.json").write_text(json.dumps(hosts, indent=2) + "\n")
            self._bridge_up()
            self._proxy_up()
            try:
                with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
                    list(pool.map(lambda item: self._host_up(item[0], item[1], hosts, lower), hosts.items()))
                self._wait_ssh(hosts, timeout)
            except BaseException:
                self._dump_consoles(hosts)
                raise

    def down(self) -> None:
        """Stop every host and the proxy, remove namespaces, links and host state (base and debs stay)."""
        _require_root()
        with self._lock():
            self._teardown()

    def status(self) -> dict[str, dict[str, object]]:
        """Per host: address, PID 1 as seen from here (None when not running), whether ssh answers."""
        _require_root()
        result: dict[str, dict[str, object]] = {}
        hosts = self.hosts if (self.state_dir / "hosts.json").exists() else {}
        for name, addr in hosts.items():
            record = _read_pid_file(self.hosts_dir / name / "pid1")
            running = _alive(record)
            answers = False
            if running:
                try:
                    answers = self.ssh(name, "true", check=False, timeout=10).returncode == 0
                except subprocess.TimeoutExpired:
                    answers = False
            result[name] = {"address": addr, "pid1": record[0] if running and record else None, "ssh": answers}
        return result

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _validate(hosts: Mapping[str, str]) -> None:
        if not hosts:
            raise RigError("no hosts")
        seen: set[str] = set()
        for name, addr in hosts.items():
            if not _NAME_RE.match(name):
                raise RigError(f"host name {name!r}: lower-case letters, digits, '-', at most 10 characters")
            ip = ipaddress.IPv4Address(addr)
            if ip not in NETWORK or str(ip) in (BRIDGE_ADDRESS, str(NETWORK.network_address), "10.231.78.255"):
                raise RigError(f"host {name}: address {addr} is not a host address in {NETWORK}")
            if addr in seen:
                raise RigError(f"address {addr} used twice")
            seen.add(addr)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.state_dir / "lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _ensure_key(self) -> None:
        if not self.key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{PREFIX}-rig", "-f", str(self.key)])

    def _bridge_up(self) -> None:
        _run(["ip", "link", "add", BRIDGE, "address", mac_for(BRIDGE_ADDRESS), "type", "bridge", "forward_delay", "0"])
        _run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{NETWORK.prefixlen}", "brd", "+", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _proxy_up(self) -> None:
        log = (self.state_dir / "proxy.log").open("ab")
        script = Path(__file__).with_name("apt_proxy.py")
        args = [sys.executable, str(script), "--bind", BRIDGE_ADDRESS, "--port", str(PROXY_PORT)]
        args += ["--cache-dir", str(DEB_CACHE_DIR), "--allow-host", str(urlsplit(controller_mirrors()[0]).hostname)]
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/"
        )
        log.close()
        self._children.append(proc)
        _write_pid_file(self.state_dir / "proxy.pid", proc.pid)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((BRIDGE_ADDRESS, PROXY_PORT), timeout=1).close()
                return
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RigError(f"the apt proxy did not start; see {self.state_dir / 'proxy.log'}") from None
                time.sleep(0.05)

    def _host_up(self, name: str, addr: str, hosts: Mapping[str, str], lower: Path) -> None:
        netns = f"{PREFIX}-{name}"
        veth, peer = f"{PREFIX}-{name}", f"{PREFIX}p-{name}"
        hostdir = self.hosts_dir / name
        for sub in ("upper", "work", "root"):
            (hostdir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(hostdir, 0o700)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{a}\t{n}" for n, a in hosts.items()]
        (hostdir / "hosts").write_text("\n".join(lines) + "\n")
        shutil.copyfile(self.key.with_suffix(".pub"), hostdir / "authorized_keys")
        (hostdir / "init").write_text(HOST_INIT)
        (hostdir / "setup.sh").write_text(_setup_script(name, hostdir, lower))

        # Network: namespace, veth into the bridge, fixed MACs, on-link default route.
        _run(["ip", "netns", "add", netns])
        _run(["ip", "link", "add", veth, "address", mac_for(addr, 0x4F), "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", netns])
        _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        inside = ["ip", "-n", netns]
        _run([*inside, "link", "set", peer, "name", "eth0", "address", mac_for(addr)])
        _run([*inside, "link", "set", "lo", "up"])
        _run([*inside, "addr", "add", f"{addr}/{NETWORK.prefixlen}", "brd", "+", "dev", "eth0"])
        _run([*inside, "link", "set", "eth0", "up"])
        _run([*inside, "route", "add", "default", "dev", "eth0"])

        # Processes: bounding set first, then the netns, then new PID/mount/UTS/IPC namespaces.
        cmd = [
            "setpriv",
            "--bounding-set=" + ",".join("-" + c for c in DROPPED_CAPABILITIES),
            "nsenter",
            f"--net=/run/netns/{netns}",
            "unshare",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            str(hostdir / "setup.sh"),
        ]
        with (hostdir / "console.log").open("ab") as console:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"},
            )
        self._children.append(proc)
        _write_pid_file(hostdir / "unshare.pid", proc.pid)
        # unshare (the Popen process after setpriv and nsenter exec'd) forks PID 1 of the host.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(FileNotFoundError):
                comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
                kids = children.read_text().split()
                if comm == "unshare" and kids:
                    _write_pid_file(hostdir / "pid1", int(kids[0]))
                    return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RigError(f"host {name} did not start; see {hostdir / 'console.log'}")
            time.sleep(0.01)

    def _wait_ssh(self, hosts: Mapping[str, str], timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def wait_one(name: str) -> None:
            pid1 = self.hosts_dir / name / "pid1"
            while True:
                if not _alive(_read_pid_file(pid1)):
                    raise RigError(f"host {name} stopped; see {self.hosts_dir / name / 'console.log'}")
                try:
                    socket.create_connection((hosts[name], 22), timeout=1).close()
                    if self.ssh(name, "true", check=False, timeout=15).returncode == 0:
                        return
                except (OSError, subprocess.TimeoutExpired):
                    pass
                if time.monotonic() > deadline:
                    raise RigError(f"host {name}: ssh does not answer after {timeout:.0f} s")
                time.sleep(0.1)

        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(wait_one, hosts))

    def _dump_consoles(self, hosts: Mapping[str, str]) -> None:
        for name in hosts:
            console = self.hosts_dir / name / "console.log"
            if console.exists():
                tail = console.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {console} (tail)\n" + "\n".join(tail), file=sys.stderr)

    def _teardown(self) -> None:
        # 1. Each host's process tree: killing PID 1 of a PID namespace kills everything in it.
        if self.hosts_dir.is_dir():
            for hostdir in sorted(self.hosts_dir.iterdir()):
                _kill_recorded(hostdir / "pid1")
                _kill_recorded(hostdir / "unshare.pid")
        # 2. Anything else still inside one of our network namespaces (e.g. an `ip netns exec` shell).
        netns_names = [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]
        ours = [n for n in netns_names if n.startswith(f"{PREFIX}-")]
        for netns in ours:
            for pid_text in _run(["ip", "netns", "pids", netns], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
        # 3. Our namespaces and links (deleting a netns deletes its veth end, and so the pair).
        for netns in ours:
            _run(["ip", "netns", "del", netns], check=False)
        for line in _run(["ip", "-o", "link", "show"]).stdout.splitlines():
            ifname = line.split(":")[1].strip().split("@")[0]
            if ifname.startswith(PREFIX) and ifname != BRIDGE:
                _run(["ip", "link", "del", ifname], check=False)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            _run(["ip", "link", "del", BRIDGE])
        # 4. The proxy.
        _kill_recorded(self.state_dir / "proxy.pid", signal.SIGTERM)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()
        # 5. Mounts of ours that somehow reached this namespace (normally none), then host state.
        for mountpoint in reversed(self._our_mounts()):
            _run(["umount", "-l", mountpoint], check=False)
        if self.hosts_dir.is_dir():
            shutil.rmtree(self.hosts_dir)
        (self.state_dir / "hosts.json").unlink(missing_ok=True)

    def _our_mounts(self) -> list[str]:
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mountpoint = line.split()[4].encode().decode("unicode_escape")
            if mountpoint.startswith((f"{self.state_dir}/", f"/run/netns/{PREFIX}-")):
                found.append(mountpoint)
        return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.multihost.rig", description="auditgate multi-host rig")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="(re)create all hosts and wait for their sshd")
    sub.add_parser("down", help="stop and remove all hosts and the proxy")
    sub.add_parser("status", help="each host, its PID 1 and whether ssh answers")
    ssh = sub.add_parser("ssh", help="ssh into a host as root (a command, or an interactive shell)")
    ssh.add_argument("host")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rig = Rig()
    try:
        _require_root()
        if args.action == "up":
            started = time.monotonic()
            rig.up()
            print(f"rig: {len(rig.hosts)} hosts up in {time.monotonic() - started:.1f} s")
        elif args.action == "down":
            started = time.monotonic()
            rig.down()
            print(f"rig: down in {time.monotonic() - started:.1f} s")
        elif args.action == "status":
            rows = rig.status()
            if not rows:
                print("rig: down")
            for name, row in rows.items():
                pid1 = row["pid1"] if row["pid1"] is not None else "-"
                answer = "ssh ok" if row["ssh"] else "ssh DOWN"
                print(f"{name:8} {row['address']:15} pid1={pid1!s:8} {answer}")
            return 0 if rows and all(r["ssh"] for r in rows.values()) else 1
        else:
            tty = ["-t"] if not args.cmd and sys.stdin.isatty() else []
            argv_ssh = ["ssh", *tty, *rig.ssh_args(), f"root@{rig.address(args.host)}", *args.cmd]
            os.execvp("ssh", argv_ssh)  # noqa: S606 - replaces this process with ssh, fixed program
    except RigError as exc:
        print(f"rig: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
