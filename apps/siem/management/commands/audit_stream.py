"""Stream the audit trail to the configured SIEM sinks (cron starts one per sink every minute)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from apps.siem import config
from apps.siem.models import SinkCursor
from apps.siem.streaming import Busy, Options, Streamer


class Command(BaseCommand):
    help = (
        "Send every audit event once complete, and every signed checkpoint, to a SIEM: syslog (RFC 5424 over TLS, "
        "octet-counted) or an HTTPS webhook (HMAC-signed NDJSON batches). At least once, from a durable cursor per "
        "sink; one streamer per sink across hosts (a MariaDB named lock): a second one exits at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sink", choices=[*config.KINDS, "all"], default="all")
        parser.add_argument("--cursor", default="", help="The cursor's name (default: the sink's kind).")
        parser.add_argument("--seconds", type=float, default=58, help="Stream this long, then exit (default 58).")
        parser.add_argument("--once", action="store_true", help="Send what is ready now, then exit.")
        parser.add_argument("--status", action="store_true", help="Print the cursors as JSON and exit.")
        parser.add_argument("--forget", action="store_true", help="Delete the cursor (it starts afresh next run).")
        parser.add_argument(
            "--checkpoints-back", type=int, default=0,
            help="A new cursor starts at the start of the Nth last checkpoint (default 0: after the last one).",
        )  # fmt: skip
        parser.add_argument("--grace", type=float, default=settings.SIEM_GRACE_SECONDS)
        for name in [f.name.replace("_", "-") for f in config.Overrides.__dataclass_fields__.values()]:
            parser.add_argument(f"--{name}", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["status"]:
            self._status(options["cursor"])
            return
        overrides = config.Overrides(**{k: options[k] for k in config.Overrides.__dataclass_fields__})
        kinds = config.configured_kinds(overrides) if options["sink"] == "all" else [options["sink"]]
        if options["cursor"] and len(kinds) != 1:
            raise CommandError("--cursor names one sink's cursor: give --sink too.")
        if options["forget"]:
            names = [options["cursor"] or kind for kind in kinds]
            deleted, _ = SinkCursor.objects.filter(name__in=names).delete()
            self.stdout.write(f"forgot {deleted} cursor(s)")
            return
        if not kinds:
            self.stdout.write("no SIEM sink configured")
            return
        run = Options(
            grace=timedelta(seconds=options["grace"]), max_lines=settings.SIEM_BATCH_LINES,
            max_bytes=settings.SIEM_BATCH_BYTES, checkpoints_back=options["checkpoints_back"],
        )  # fmt: skip
        streamers = [Streamer(options["cursor"] or kind, config.make_sink(kind, overrides), run) for kind in kinds]
        self._run_all(streamers, seconds=options["seconds"], once=options["once"])

    def _run_all(self, streamers: list[Streamer], *, seconds: float, once: bool) -> None:
        """Each sink in a thread of its own (its own connection, so its own lock): a hung
        receiver holds back only its own sink."""
        errors: list[BaseException] = []

        def stream(streamer: Streamer) -> None:
            try:
                totals = streamer.run(seconds=seconds, once=once)
                self.stdout.write(
                    f"{streamer.name}: sent {totals.events} events and {totals.checkpoints} checkpoints"
                    f" ({totals.failures} failed deliveries)"
                )
            except Busy as busy:
                self.stdout.write(f"{streamer.name}: {busy}")
            except BaseException as error:
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=stream, args=(s,), name=f"siem-{s.name}") for s in streamers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _status(self, name: str) -> None:
        cursors = SinkCursor.objects.order_by("name")
        if name:
            cursors = cursors.filter(name=name)
        fields = ("name", "kind", "low_water", "done", "assumed_gaps", "checkpoint_through", "events_sent",
                  "checkpoints_sent", "last_sent_at", "last_lag_seconds", "last_error", "updated_at")  # fmt: skip
        rows = [{f: getattr(c, f) for f in fields} for c in cursors]
        self.stdout.write(json.dumps(rows, indent=2, default=str))
