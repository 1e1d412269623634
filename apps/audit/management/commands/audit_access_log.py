"""Which requests in Apache's access log never reached Django (no audit event with their id)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.access_log import parse, read_lines, summary, unseen_by_django, with_rotations

DEFAULT_LOG = "/var/log/apache2/auditgate_access.log"


class Command(BaseCommand):
    help = (
        "Join Apache's access log to the audit trail on the request id and list the requests under "
        "--prefix that Django never saw: refused by mod_wsgi (full backlog 503, queue timeout 504), "
        "lost with a daemon, or refused by Apache itself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--log", action="append", dest="logs", metavar="FILE",
            help=f"Access log in the auditgate format, plain or .gz; repeat for several. Default: {DEFAULT_LOG} "
            "and its rotations (.1, .2.gz, ...) written to since --since.",
        )  # fmt: skip
        parser.add_argument(
            "--prefix", action="append", dest="prefixes", metavar="PATH",
            help="Only requests Apache routes under this path (repeat for several). Default: /gw/",
        )  # fmt: skip
        parser.add_argument("--since", type=datetime.fromisoformat, help="ISO time with offset (2026-01-01T00:00Z).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="One JSON document instead of lines.")

    def handle(self, *args: Any, logs: list[str] | None, prefixes: list[str] | None, since: datetime | None,
               as_json: bool, **options: Any) -> None:  # fmt: skip
        if since is not None and since.tzinfo is None:
            raise CommandError("--since needs a time zone offset (e.g. +00:00 or Z).")
        try:
            files = [Path(log) for log in logs] if logs else with_rotations(Path(DEFAULT_LOG), since)
            unseen = unseen_by_django(parse(read_lines(files)), tuple(prefixes or ["/gw/"]), since)
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename or 'the log'}: {exc.strerror or exc}") from None
        report = summary(unseen)
        if as_json:
            self.stdout.write(json.dumps(report, indent=1))
            return
        for request in report["requests"]:  # type: ignore[attr-defined]
            line = "{time} {status} {duration_ms:.0f} ms {request_id} {method} {path}"
            self.stdout.write(line.format(**{**request, "request_id": request["request_id"] or "-"}))
        self.stdout.write(f"never seen by Django: {report['unseen']} {report['by_status']}")
