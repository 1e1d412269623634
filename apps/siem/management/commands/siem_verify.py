"""Check a SIEM's capture of the stream: every event each checkpoint covers arrived and re-chains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.models import AuditSeal
from apps.siem.capture import CaptureReport, read, verify_capture


class Command(BaseCommand):
    help = (
        "Verify files a SIEM captured from audit_stream (webhook NDJSON bodies, or syslog messages one a line, "
        "duplicates and any order allowed): each checkpoint's events all arrived and re-chain to its head hash, "
        "the checkpoints link, and (with AUDITGATE_AUDIT_SEAL_KEYS) are signed. Exit 1 on any problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument(
            "--database", action="store_true", help="Also compare each checkpoint with the trail's own."
        )

    def handle(self, *args: Any, files: list[Path], as_json: bool, database: bool, **options: Any) -> None:
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        report = verify_capture(files, keys=settings.AUDIT_SEAL_KEYS)
        if database:
            _compare_with_database(files, report)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{report.lines_read} lines: {report.events} events ({report.duplicates} duplicates), "
                f"{report.checkpoints} checkpoints; {report.events_verified} events re-chained"
                f" (ids {report.first_seq}..{report.last_seq}), {report.unsealed} after the last checkpoint;"
                f" signatures {'checked' if report.signatures_checked else 'NOT checked (no key)'}"
            )
            for problem in report.problems:
                self.stdout.write(problem)
        if not report.ok:
            raise CommandError("capture NOT complete or NOT intact")
        if not as_json:
            self.stdout.write("capture intact")


def _compare_with_database(files: list[Path], report: CaptureReport) -> None:
    capture = read(files, CaptureReport())
    stored = {s.last_seq: s for s in AuditSeal.objects.filter(last_seq__in=list(capture.checkpoints))}
    for last_seq, line in capture.checkpoints.items():
        seal = stored.get(last_seq)
        if seal is None or (seal.head_hash, seal.signature) != (line.get("head_hash"), line.get("signature")):
            report.problems.append(f"checkpoint {last_seq} differs from the trail's")
