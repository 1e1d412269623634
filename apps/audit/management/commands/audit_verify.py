"""Verify the audit trail: hash chain, checkpoints, signatures and the external checkpoint file."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.audit import sealing
from apps.audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Recompute the audit hash chain and compare it with the stored hashes, the checkpoints, their "
        "signatures (AUDITGATE_AUDIT_SEAL_KEY) and the external checkpoint file. Exits 1 and names the "
        "first bad seq when anything was altered, deleted, inserted, reordered or truncated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint-file", default=settings.AUDIT_CHECKPOINT_FILE)
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as JSON.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, checkpoint_file: str, as_json: bool, no_progress: bool, **options: Any) -> None:
        total = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with tqdm(total=total, unit="event", disable=no_progress, file=self.stderr) as bar:
            report = sealing.verify(key=settings.AUDIT_SEAL_KEY, checkpoint_file=checkpoint_file, progress=bar.update)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._summary(report)
        if not report.ok:
            raise CommandError(f"audit trail NOT intact; first bad seq: {report.first_bad_seq}")

    def _summary(self, report: sealing.Report) -> None:
        self.stdout.write(
            f"{report.events_checked} events in {report.segments_checked} segments checked; "
            f"{report.unsealed_tail} not sealed yet; signatures "
            f"{'checked' if report.signatures_checked else 'NOT checked (no key)'}; checkpoint file "
            f"{'checked' if report.checkpoint_file_checked else 'not checked'}"
        )
        for problem in report.problems:
            self.stdout.write(f"{problem.kind} at seq {problem.seq}: {problem.detail}")
        if report.ok:
            self.stdout.write("audit trail intact")
