#!/usr/bin/env python3
"""Identify and pack an auditgate release on the Ansible controller.

A release is the set of files that git tracks or would track in the checkout:
``git ls-files -co --exclude-standard``. Files that are not committed yet are
included, so developers can deploy their working tree. The release id is a hash
of every file's path, executable bit and content. The same tree always gets the
same id, and any change gives a new one.

    release.py id REPO [--exclude PREFIX ...]
        prints {"id": ..., "files": N}
    release.py build REPO OUT_DIR [--exclude PREFIX ...] [--keep N]
        writes OUT_DIR/auditgate-<id>.tar.gz unless it exists, keeps the N newest
        tarballs, and prints {"id": ..., "tarball": ..., "changed": bool}
    release.py wheels REPO OUT_DIR
        builds a wheel of every requirement (REPO/requirements.txt) with this Python, so
        that hosts without a package index install them (pip --no-index); writes
        OUT_DIR/wheels-<id>.tar unless it exists, where id hashes requirements.txt, and
        prints {"id": ..., "tarball": ..., "changed": bool}

The tarball holds root-owned entries with modes 0644/0755 and ends with a
``RELEASE_ID`` file. A release directory that has ``RELEASE_ID`` was extracted
completely.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MARKER = "RELEASE_ID"


def release_files(repo: Path, excludes: list[str]) -> list[str]:
    """Tracked and untracked-but-not-ignored files that exist, sorted, minus excludes."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    names = {name.decode() for name in out.split(b"\0") if name}
    prefixes = tuple(excludes)
    kept = []
    for name in names:
        if name.startswith(prefixes) or name == MARKER:
            continue
        path = repo / name
        # Deleted-but-tracked files are gone from the working tree: skip them.
        if path.is_symlink() or path.is_file():
            kept.append(name)
    return sorted(kept)


def release_id(repo: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = repo / name
        if path.is_symlink():
            kind, content = b"l", os.readlink(path).encode()
        else:
            kind = b"x" if os.access(path, os.X_OK) else b"f"
            content = path.read_bytes()
        digest.update(name.encode() + b"\0" + kind + b"\0")
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()[:16]


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir() or (info.isfile() and info.mode & stat.S_IXUSR):
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o644
    return info


def build(repo: Path, out_dir: Path, names: list[str], rid: str) -> tuple[Path, bool]:
    tarball = out_dir / f"auditgate-{rid}.tar.gz"
    if tarball.exists():
        os.utime(tarball)  # in use again: newest for prune()
        return tarball, False
    out_dir.mkdir(parents=True, exist_ok=True)
    dirs = sorted({str(parent) for name in names for parent in Path(name).parents} - {"."})
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".partial-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in dirs:
                tar.add(repo / name, arcname=name, recursive=False, filter=_normalise)
            for name in names:
                tar.add(repo / name, arcname=name, recursive=False, filter=_normalise)
            marker = tarfile.TarInfo(MARKER)
            data = f"{rid}\n".encode()
            marker.size = len(data)
            tar.addfile(_normalise(marker), io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, tarball)  # atomic: parallel builds of the same id are harmless
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tarball, True


def build_wheels(repo: Path, out_dir: Path) -> tuple[str, Path, bool]:
    """The requirements as wheels built here: the controller is a Debian 12 host like the
    web hosts (same Python, same libraries), so its wheels (mod_wsgi, mysqlclient) fit them."""
    requirements = repo / "requirements.txt"
    wid = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    tarball = out_dir / f"wheels-{wid}.tar"
    if tarball.exists():
        return wid, tarball, False
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".wheels-") as tmp:
        wheel_dir = Path(tmp) / "wheels"
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--use-pep517", "--wheel-dir", str(wheel_dir)]
        # stdout carries the JSON answer only.
        subprocess.run([*pip_wheel, "-r", str(requirements)], check=True, stdout=sys.stderr)
        shutil.copy(requirements, wheel_dir / "requirements.txt")
        partial = Path(tmp) / "wheels.tar"
        with tarfile.open(partial, "w") as tar:
            for wheel in sorted(wheel_dir.iterdir()):
                tar.add(wheel, arcname=wheel.name, filter=_normalise)
        os.chmod(partial, 0o644)
        os.replace(partial, tarball)
    return wid, tarball, True


def prune(out_dir: Path, keep: int) -> None:
    tarballs = sorted(out_dir.glob("auditgate-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    for old in tarballs[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    id_cmd = sub.add_parser("id")
    id_cmd.add_argument("repo", type=Path)
    build_cmd = sub.add_parser("build")
    build_cmd.add_argument("repo", type=Path)
    build_cmd.add_argument("out_dir", type=Path)
    build_cmd.add_argument("--keep", type=int, default=5)
    for cmd in (id_cmd, build_cmd):
        cmd.add_argument("--exclude", action="append", default=[], metavar="PREFIX")
    wheels_cmd = sub.add_parser("wheels")
    wheels_cmd.add_argument("repo", type=Path)
    wheels_cmd.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    if args.command == "wheels":
        wid, tarball, changed = build_wheels(args.repo.resolve(), args.out_dir)
        print(json.dumps({"id": wid, "tarball": str(tarball), "changed": changed}))
        return 0

    repo = args.repo.resolve()
    names = release_files(repo, args.exclude)
    rid = release_id(repo, names)
    if args.command == "id":
        print(json.dumps({"id": rid, "files": len(names)}))
        return 0
    tarball, changed = build(repo, args.out_dir, names, rid)
    prune(args.out_dir, args.keep)
    print(json.dumps({"id": rid, "tarball": str(tarball), "changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
