"""Typed access to the deployment's configuration.

Values come from the process environment and, on deployed hosts, from the env
file that Ansible writes (``/etc/auditgate/auditgate.env``).  Real environment
variables win over the file, so a developer or a test can override one value
without editing it.  Every helper raises ``ImproperlyConfigured`` on a missing
or malformed value: a misconfigured deployment must fail at start-up, not on
the first request that happens to read the setting.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MISSING = object()
# Seconds to wait for the replica to accept a connection (mysqlclient connect_timeout).
REPLICA_CONNECT_TIMEOUT = 2


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` lines; blank lines and ``#`` comments are ignored.

    The files are written by our Ansible role, so the format is deliberately
    minimal: no quoting, no ``export``, no interpolation.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=value")
        values[key.strip()] = value.strip()
    return values


class Env:
    """A read-only view over the file values with the process environment on top."""

    def __init__(self, files: builtins.list[Path], environ: Mapping[builtins.str, builtins.str] = os.environ):
        merged: dict[builtins.str, builtins.str] = {}
        for path in files:
            if path.is_file():
                merged.update(read_env_file(path))
        merged.update(environ)
        self._values = merged

    def _raw(self, name: builtins.str, default: object) -> builtins.str | object:
        if name in self._values:
            return self._values[name]
        if default is _MISSING:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default

    def str(self, name: builtins.str, default: builtins.str | object = _MISSING) -> builtins.str:
        value = self._raw(name, default)
        return value if isinstance(value, builtins.str) else default  # type: ignore[return-value]

    def secret(self, name: builtins.str) -> builtins.str:
        """A secret has no default; ``<NAME>_FILE`` may point at a file holding it."""
        path = self._values.get(f"{name}_FILE")
        value = Path(path).read_text(encoding="utf-8").strip() if path else self.str(name)
        if not value:
            raise ImproperlyConfigured(f"{name} must not be empty.")
        return value

    def bool(self, name: builtins.str, default: builtins.bool | object = _MISSING) -> builtins.bool:
        value = self._raw(name, default)
        if isinstance(value, builtins.bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {value!r}.")

    def int(self, name: builtins.str, default: builtins.int | object = _MISSING) -> builtins.int:
        value = self._raw(name, default)
        if isinstance(value, builtins.int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str] | object = _MISSING
    ) -> builtins.list[builtins.str]:
        value = self._raw(name, default)
        if isinstance(value, builtins.list):
            return value
        return [item.strip() for item in str(value).split(",") if item.strip()]

    def key_ring(self, name: builtins.str, default: builtins.str | None = None) -> dict[builtins.int, bytes]:
        """A ring of keys by id (token peppers, audit seal keys): ``"1:secret,2:secret"`` ->
        ``{1: b"secret", 2: b"secret"}``; at least one, ids positive."""
        raw = self._values.get(name, default)
        if raw is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        peppers: dict[builtins.int, bytes] = {}
        for item in raw.split(","):
            ident, sep, secret = item.strip().partition(":")
            if not sep or not ident.isdigit() or int(ident) < 1 or len(secret) < 16:
                raise ImproperlyConfigured(
                    f"{name}: expected 'id:secret' pairs with ids >= 1 and secrets of 16+ characters."
                )
            peppers[int(ident)] = secret.encode()
        return peppers


def token_peppers(env: Env, default: str | None = None) -> tuple[dict[int, bytes], int]:
    """The API token peppers (id -> secret) and the id new tokens use (default: the highest).

    ``AUDITGATE_TOKEN_PEPPERS`` is "1:secret,2:secret"; ``AUDITGATE_TOKEN_PEPPER_ID`` picks the
    current one.  Tokens keep the id of their pepper, so an older pepper stays until its tokens
    have expired.  An id outside the set stops start-up: no token could be made or checked."""
    peppers = env.key_ring("AUDITGATE_TOKEN_PEPPERS", default)
    return peppers, _current_id(env, "AUDITGATE_TOKEN_PEPPER_ID", peppers, "pepper of AUDITGATE_TOKEN_PEPPERS")


def secrets_keys(env: Env, default: str | None = None) -> tuple[dict[int, bytes], int]:
    """The key ring that encrypts secrets stored in the database (id -> Fernet key) and the id of
    the key new values are encrypted with (default: the highest).

    ``AUDITGATE_SECRETS_KEYS`` is "2:<key>,1:<key>", each key a Fernet key (urlsafe base64 of 32
    random bytes); ``AUDITGATE_SECRETS_KEY_ID`` picks the current one.  Every key decrypts, so a
    new key can be made current at once and the older one dropped after ``manage.py rekey``.
    A key that is not a Fernet key stops start-up: the first stored secret would fail instead."""
    keys = env.key_ring("AUDITGATE_SECRETS_KEYS", default)
    for ident, key in keys.items():
        if not _is_fernet_key(key):
            raise ImproperlyConfigured(
                f"AUDITGATE_SECRETS_KEYS: key {ident} is not a Fernet key (urlsafe base64 of 32 bytes), make one with: "
                'python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
            )
    return keys, _current_id(env, "AUDITGATE_SECRETS_KEY_ID", keys, "key of AUDITGATE_SECRETS_KEYS")


def _is_fernet_key(key: bytes) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except (binascii.Error, ValueError):
        return False


def _current_id(env: Env, name: str, ids: Iterable[int], what: str) -> int:
    """The id ``name`` picks (default: the highest), which must be one of ``ids``."""
    ids = set(ids)
    current = env.int(name, max(ids))
    if current not in ids:
        raise ImproperlyConfigured(f"{name} names no {what}.")
    return current


def audit_seal_keys(env: Env) -> tuple[dict[str, str], str]:
    """The audit seal key ring (key id, as checkpoints record it -> secret) and the id of the
    key new checkpoints are signed with; ``({}, "")`` when no key is set (checkpoints unsigned).

    ``AUDITGATE_AUDIT_SEAL_KEYS`` is a ring in the token peppers' format ("1:secret,2:secret");
    ``AUDITGATE_AUDIT_SEAL_KEY_ID`` picks the current key (default: the highest id).  A host
    deployed before keys could rotate has a single ``AUDITGATE_AUDIT_SEAL_KEY`` (id default "1"),
    read as a ring of one as it was, until the next deploy rewrites its file.
    """
    ring_name, single_name, id_name = (
        "AUDITGATE_AUDIT_SEAL_KEYS", "AUDITGATE_AUDIT_SEAL_KEY", "AUDITGATE_AUDIT_SEAL_KEY_ID"
    )  # fmt: skip
    ring, single = env.str(ring_name, ""), env.str(single_name, "")
    if ring and single:  # which one signs would be a guess
        raise ImproperlyConfigured(f"Set {ring_name} or {single_name}, not both.")
    if single:
        current = env.str(id_name, "1")
        return {current: single}, current
    if not ring:
        return {}, ""
    keys = env.key_ring(ring_name)
    current_id = _current_id(env, id_name, keys, f"key of {ring_name}")
    # Checkpoints record the id as text: the ring is keyed the same way.
    return {str(ident): secret.decode() for ident, secret in keys.items()}, str(current_id)


def replica_database(env: Env, default: dict[str, Any]) -> dict[str, Any] | None:
    """The ``replica`` database alias (``apps.core.replica``), or None without
    ``AUDITGATE_DB_REPLICA_HOST``: a copy of ``default`` (same database, account and
    password) on the replica's host and port, connecting with a short timeout so that a dead
    replica is found out in seconds.  The test runner never creates a database for it."""
    host = env.str("AUDITGATE_DB_REPLICA_HOST", "")
    if not host:
        return None
    replica = copy.deepcopy(default)
    replica.update(HOST=host, PORT=env.str("AUDITGATE_DB_REPLICA_PORT", "3306"), TEST={"MIRROR": "default"})
    replica["OPTIONS"]["connect_timeout"] = REPLICA_CONNECT_TIMEOUT
    return replica
