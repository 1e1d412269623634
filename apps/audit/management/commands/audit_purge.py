"""Retention: export and delete whole sealed audit segments older than a date."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from apps.audit import retention


class Command(BaseCommand):
    help = (
        "Export to NDJSON, then delete, the oldest sealed segments whose events all occurred before --before. "
        "Checkpoints are kept, so audit_verify still passes, and audit_verify --archive FILE re-chains the export to "
        "them. Run it with the privileged database account."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", required=True, help="A date (YYYY-MM-DD) or an ISO-8601 time.")
        parser.add_argument("--export-dir", type=Path, default=Path("/var/lib/auditgate/purged"))
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, before: str, export_dir: Path, no_progress: bool, **options: Any) -> None:
        try:
            moment = datetime.fromisoformat(before)
        except ValueError:
            raise CommandError(f"--before: {before!r} is not a date or ISO-8601 time.") from None
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        segments = retention.purgeable_segments(moment)
        total = sum(s.last_seq - s.first_seq + 1 for s in segments)
        with tqdm(total=total, unit="seq", disable=no_progress, file=self.stderr) as bar:
            done = retention.purge(moment, export_dir, progress=bar.update)
        if done is None:
            self.stdout.write("nothing to purge")
        else:
            self.stdout.write(f"purged {done.events} events through seq {done.through_seq}; export: {done.export_file}")
