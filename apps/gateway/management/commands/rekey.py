"""Re-encrypt every secret stored in the database under the current key of the secrets key ring.

Run it after making a new key current (``AUDITGATE_SECRETS_KEYS`` / ``AUDITGATE_SECRETS_KEY_ID``
in auditgate.env); once it reports no unreadable secret, the older keys can leave the ring.
Idempotent: a second run re-encrypts nothing.  The values do not change, so no audit event.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core import secrets_at_rest


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (upstream credentials, identity keys) under the current secrets key."

    def handle(self, *args: Any, **options: Any) -> None:
        done = secrets_at_rest.rekey()
        self.stdout.write(f"{done.reencrypted} secrets re-encrypted, {done.current} already under the current key.")
        if done.unreadable:
            where = ", ".join(f"{table} {pk} {column}" for table, pk, column in done.unreadable)
            raise CommandError(
                f"{len(done.unreadable)} secrets no key of AUDITGATE_SECRETS_KEYS decrypts, left as they are: {where}. "
                "Put the key they were encrypted with back in the ring, or set those secrets again."
            )
