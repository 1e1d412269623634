"""Extend the audit hash chain and write a signed checkpoint (cron runs this every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit import sealing


class Command(BaseCommand):
    help = (
        "Seal audit events older than the grace window into the hash chain: per-event hashes, a checkpoint "
        "signed with the current key of AUDITGATE_AUDIT_SEAL_KEYS (AUDITGATE_AUDIT_SEAL_KEY_ID, recorded in the "
        "checkpoint), and a line in AUDITGATE_AUDIT_CHECKPOINT_FILE."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=100_000, help="Events per checkpoint (default 100000).")
        parser.add_argument("--all", action="store_true", help="Repeat until nothing is left to seal.")

    def handle(self, *args: Any, limit: int, all: bool, **options: Any) -> None:
        sealed = 0
        while checkpoint := sealing.seal(limit=limit):
            sealed += checkpoint.count
            self.stdout.write(f"sealed {checkpoint.first_seq}..{checkpoint.last_seq} ({checkpoint.count} events)")
            if not all:
                break
        if not sealed:
            self.stdout.write("nothing to seal")
