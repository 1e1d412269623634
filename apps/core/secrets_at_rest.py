"""Secrets stored encrypted: a model field that keeps Fernet tokens in its column.

The key ring is the deployment's own (``settings.SECRETS_KEYS``, ``AUDITGATE_SECRETS_KEYS``),
never derived from ``SECRET_KEY``: rotating ``SECRET_KEY`` (sessions, CSRF) must not make every
stored credential unreadable, and the ring rotates on its own (``manage.py rekey``).  That is
why not django-fernet-encrypted-fields, which derives its keys from ``SECRET_KEY``.

A field rather than encrypt/decrypt calls in the models: the model, the API, the admin and the
audit snapshots keep seeing plain text (so an audit diff compares meanings, and masks them by
field name, ``apps.audit.masking``), and only the column holds the token.  An empty value stays
empty, so "no secret" needs no key.

A token the ring cannot decrypt (a key dropped too early, a wrong ring in auditgate.env) does not make the
row unloadable: it reads as an ``UnreadableSecret``, empty text carrying the stored token.  The
API and the admin still list the row and can overwrite the secret, saving the row writes the
token back unchanged, and whoever uses the secret checks ``unreadable_fields`` first (the
gateway refuses with 503 ``upstream_secret_unreadable``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction


class UnreadableSecret(str):
    """A stored token that no key of the ring decrypts: empty text, the token kept in ``token``."""

    token: str

    def __new__(cls, token: str) -> UnreadableSecret:
        secret = super().__new__(cls, "")
        secret.token = token
        return secret

    def __repr__(self) -> str:
        return "UnreadableSecret()"


@functools.lru_cache(maxsize=4)
def _ring(keys: tuple[tuple[int, bytes], ...], current: int) -> MultiFernet:
    ordered = sorted(keys, key=lambda item: (item[0] != current, -item[0]))  # the current key first
    return MultiFernet([Fernet(key) for _, key in ordered])


def key_ring() -> MultiFernet:
    """Every key of ``settings.SECRETS_KEYS``, the current one first (MultiFernet encrypts with it)."""
    return _ring(tuple(sorted(settings.SECRETS_KEYS.items())), settings.SECRETS_KEY_ID)


def current_key() -> Fernet:
    return Fernet(settings.SECRETS_KEYS[settings.SECRETS_KEY_ID])


def encrypt(plaintext: str) -> str:
    return key_ring().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plain text of ``token``; raises ``cryptography.fernet.InvalidToken`` when no key opens it."""
    return key_ring().decrypt(token.encode()).decode()


def read(token: str) -> str:
    """The plain text of a stored ``token``, or an ``UnreadableSecret`` holding it."""
    try:
        return decrypt(token)
    except (InvalidToken, UnicodeError):
        return UnreadableSecret(token)


class EncryptedTextField(models.TextField):
    """Text kept as a Fernet token in the column; the model sees the plain text.

    Never filter on it: every encryption of a value gives a different token."""

    description = "Text stored encrypted (Fernet, the secrets key ring)"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return read(value) if value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if isinstance(value, UnreadableSecret):
            return value.token  # kept as stored: saving the row must not wipe the secret
        return encrypt(value) if value else value


def is_set(value: str) -> bool:
    """Whether a secret is stored, readable or not (an ``UnreadableSecret`` has empty text)."""
    return bool(value) or isinstance(value, UnreadableSecret)


def unreadable_fields(obj: models.Model) -> list[str]:
    """The names of ``obj``'s encrypted fields whose stored token the key ring cannot open."""
    return [f.name for f in _encrypted_fields(type(obj)) if isinstance(getattr(obj, f.attname), UnreadableSecret)]


def _encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


@dataclass
class Rekeyed:
    """What ``rekey`` did: tokens re-encrypted, tokens already under the current key, and the
    ``(table, pk, column)`` of the tokens no key opens (left as they are)."""

    reencrypted: int = 0
    current: int = 0
    unreadable: list[tuple[str, Any, str]] = field(default_factory=list)


def rekey() -> Rekeyed:
    """Re-encrypt every stored secret of every model under the current key (``MultiFernet.rotate``).

    Idempotent: a token the current key already opens is left alone, so a second run changes
    nothing.  Raw SQL, so that the stored tokens are compared and written, not the plain text,
    and ``updated_at`` stays: the values do not change.  Each table's rows are locked while it is
    rewritten, so a secret changed meanwhile through the API is not overwritten with the old one."""
    done = Rekeyed()
    for model in apps.get_models():
        columns = [f.column for f in _encrypted_fields(model)]
        if columns:
            _rekey_table(model._meta.db_table, model._meta.pk.column, columns, done)
    return done


def _rekey_table(table: str, pk: str, columns: list[str], done: Rekeyed) -> None:
    quote = connection.ops.quote_name
    selected = ", ".join(quote(name) for name in [pk, *columns])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT {selected} FROM {quote(table)} ORDER BY {quote(pk)} FOR UPDATE")  # noqa: S608
        for row_pk, column, token in _stored_tokens(cursor.fetchall(), columns):
            if _opens(current_key(), token):
                done.current += 1
                continue
            try:
                rotated = key_ring().rotate(token.encode()).decode("ascii")
            except InvalidToken:
                done.unreadable.append((table, row_pk, column))
                continue
            update = f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote(pk)} = %s"  # noqa: S608
            cursor.execute(update, [rotated, row_pk])
            done.reencrypted += 1


def _stored_tokens(rows: list[tuple[Any, ...]], columns: list[str]) -> Iterator[tuple[Any, str, str]]:
    for row_pk, *tokens in rows:
        for column, token in zip(columns, tokens, strict=True):
            if token:
                yield row_pk, column, token


def _opens(key: Fernet, token: str) -> bool:
    try:
        key.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
