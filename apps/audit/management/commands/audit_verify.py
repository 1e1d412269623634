"""Verify the audit trail (hash chain, checkpoints, signatures, the external checkpoint file), or
purge archives against the checkpoints of the events they hold (``--archive``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.audit import archives, sealing, verifications
from apps.audit.acting import Acting
from apps.audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Recompute the audit hash chain and compare it with the stored hashes, the checkpoints, their "
        "signatures (each under the key of AUDITGATE_AUDIT_SEAL_KEYS its key id names) and the external "
        "checkpoint file. Exits 1 and names the first bad seq when anything was altered, deleted, inserted, "
        "reordered, truncated or signed with a key not in the ring. With --archive, "
        "check purge archives instead: each must re-chain to the checkpoints of the segments it holds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint-file", default=settings.AUDIT_CHECKPOINT_FILE)
        parser.add_argument(
            "--archive", action="extend", nargs="+", type=Path, default=[], metavar="FILE",
            help="An NDJSON archive written by audit_purge; several may follow, and the option may repeat. "
            "Checks only the archives (and their checkpoints), not the trail in the database.",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as JSON.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self, *args: Any, checkpoint_file: str, archive: list[Path], as_json: bool, no_progress: bool, **options: Any
    ) -> None:
        if archive:
            self._verify_archives(archive, as_json=as_json, no_progress=no_progress)
            return
        total = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with tqdm(total=total, unit="event", disable=no_progress, file=self.stderr) as bar:
            report = sealing.verify(keys=settings.AUDIT_SEAL_KEYS, checkpoint_file=checkpoint_file, progress=bar.update)
        # In the trail, so that the API can say when the whole trail last verified (and how).
        failed = verifications.record(report, acting=Acting.from_command("audit_verify"), scope=verifications.FULL)
        for receiver, error in failed:
            self.stderr.write(f"verification_failed receiver {receiver!r} failed: {error!r}")
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._summary(report)
        if not report.ok:
            raise CommandError(f"audit trail NOT intact; first bad seq: {report.first_bad_seq}")

    def _summary(self, report: sealing.Report) -> None:
        self._write_report(
            f"{report.events_checked} events in {report.segments_checked} segments checked; "
            f"{report.unsealed_tail} not sealed yet; {_signatures(report)}; checkpoint file "
            f"{'checked' if report.checkpoint_file_checked else 'not checked'}",
            [f"{problem.kind} at seq {problem.seq}: {problem.detail}" for problem in report.problems],
            "audit trail intact" if report.ok else "",
        )

    def _write_report(self, summary: str, problems: list[str], verdict: str) -> None:
        for line in (summary, *problems, verdict):
            if line:
                self.stdout.write(line)

    # --- purge archives ------------------------------------------------------------------

    def _verify_archives(self, paths: list[Path], *, as_json: bool, no_progress: bool) -> None:
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"--archive: no such file: {', '.join(missing)}")
        size = sum(path.stat().st_size for path in paths)
        with tqdm(total=size, unit="B", unit_scale=True, disable=no_progress, file=self.stderr) as bar:
            reports = [archives.verify_archive(p, keys=settings.AUDIT_SEAL_KEYS, progress=bar.update) for p in paths]
        if as_json:
            body = {"ok": all(r.ok for r in reports), "archives": [r.as_dict() for r in reports]}
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for report in reports:
                self._archive_summary(report)
        failed = [r for r in reports if not r.ok]
        if failed:
            named = "; ".join(f"{r.archive} (first bad seq {r.first_bad_seq}, line {r.first_bad_line})" for r in failed)
            raise CommandError(f"archive NOT intact: {named}")

    def _archive_summary(self, report: archives.ArchiveReport) -> None:
        covered = f"ids {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "no ids"
        self._write_report(
            f"{report.archive}: {report.lines_read} lines, {report.events_checked} events re-chained in "
            f"{report.segments_checked} segments ({covered}); {_signatures(report)}; purge boundaries "
            f"{'checked' if report.purge_checked else 'not checked (not a purged range)'}",
            [f"{p.kind} at seq {p.seq}, line {getattr(p, 'line', None)}: {p.detail}" for p in report.problems],
            "archive intact" if report.ok else "",
        )


def _signatures(report: sealing.Report) -> str:
    return f"signatures {'checked' if report.signatures_checked else 'NOT checked (no key)'}"
