"""Copy the signed checkpoints other hosts sealed into this host's checkpoint file (cron, every
minute, on every web host): ``apps.audit.witnessing``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit import witnessing


class Command(BaseCommand):
    help = (
        "Append to this host's AUDITGATE_AUDIT_CHECKPOINT_FILE every checkpoint of the database it lacks, in "
        "order, each after checking its signature (AUDITGATE_AUDIT_SEAL_KEYS) and that it follows the file's last "
        "line. Exits 1, writing nothing, when a checkpoint the file has differs from the database's or is missing "
        "from it; exits 1 after the checkpoints that checked out when a newer one does not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint-file", default=settings.AUDIT_CHECKPOINT_FILE)

    def handle(self, *args: Any, checkpoint_file: str, **options: Any) -> None:
        if not checkpoint_file:
            raise CommandError("Set AUDITGATE_AUDIT_CHECKPOINT_FILE (or --checkpoint-file): nowhere to witness to.")
        if not settings.AUDIT_SEAL_KEYS:
            raise CommandError("Set AUDITGATE_AUDIT_SEAL_KEYS: a checkpoint is copied only once its signature holds.")
        result = witnessing.witness(Path(checkpoint_file), settings.AUDIT_SEAL_KEYS)
        for seal in result.copied:
            self.stdout.write(f"copied {seal.first_seq}..{seal.last_seq}")
        if result.behind:
            self.stdout.write(f"{len(result.behind)} older checkpoints are not in the file (behind, not changed)")
        for problem in result.problems:
            self.stdout.write(problem)
        if not result.ok:
            raise CommandError(f"{checkpoint_file} and the database's checkpoints differ: see above")
        if not result.copied:
            self.stdout.write("nothing to copy")
