"""Mark gateway attempts left open by a crashed process as interrupted (cron runs this every minute)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit.reconciling import reconcile


class Command(BaseCommand):
    help = (
        "Close gateway attempts that never got an outcome: those whose daemon process is gone from this host "
        "(never one whose process still runs: long streams are fine), and those taken on another host that are "
        "older than --older-than minutes (that host is gone for good). Each gets error 'interrupted'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, default=24 * 60, metavar="MINUTES",
                            help="for attempts taken on other hosts (default: a day)")  # fmt: skip

    def handle(self, *args: Any, older_than: int, **options: Any) -> None:
        closed = reconcile(older_than=timedelta(minutes=older_than))
        self.stdout.write(f"interrupted: {len(closed)}" + (f" ({', '.join(map(str, closed))})" if closed else ""))
