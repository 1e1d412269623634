"""Mark gateway attempts left open by a crashed process as interrupted (cron runs this every minute)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit.reconciling import reconcile


class Command(BaseCommand):
    help = (
        "Close gateway attempts that never got an outcome: at once those whose daemon process is gone from this "
        "host, and any older than --older-than minutes (default: AUDIT_OPEN_ATTEMPT_BOUND_SECONDS, 5 minutes, "
        "longer than any exchange can last). Each gets error 'interrupted'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, default=None, metavar="MINUTES",
                            help="close any open attempt older than this (default: 5)")  # fmt: skip

    def handle(self, *args: Any, older_than: int | None, **options: Any) -> None:
        closed = reconcile(older_than=timedelta(minutes=older_than) if older_than else None)
        self.stdout.write(f"interrupted: {len(closed)}" + (f" ({', '.join(map(str, closed))})" if closed else ""))
