"""Load synthetic audit events (benchmarks, demos). Never on a production database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from apps.audit.seeding import seed


class Command(BaseCommand):
    help = "Insert --rows realistic synthetic gateway events spread over the last 30 days (for benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, required=True)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, rows: int, no_progress: bool, **options: Any) -> None:
        with tqdm(total=rows, unit="event", disable=no_progress, file=self.stderr) as bar:
            written = seed(rows, progress=bar.update)
        self.stdout.write(f"seeded {written} events")
