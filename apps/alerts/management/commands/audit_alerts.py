"""Evaluate the alert rules on the audit trail and deliver alerts (cron starts it each minute)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection

from apps.alerts import delivery, evaluator, tail


class Command(BaseCommand):
    help = (
        "Evaluate the enabled alert rules on the new audit events about every --interval seconds for --seconds "
        "(cron starts it each minute), and post due alerts to AUDITGATE_ALERTS_WEBHOOK_URL. One evaluator runs at "
        "a time across hosts (a MariaDB named lock). --once: a single pass (tests, by hand)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=58, help="How long to run (default 58).")
        parser.add_argument("--interval", type=float, default=1, help="Seconds between passes (default 1).")
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument(
            "--lock-wait",
            type=float,
            default=None,
            help="Seconds to wait for another evaluator's pass (default: 30 with --once, else 0).",
        )
        parser.add_argument("--webhook-url", default="", help="Overrides AUDITGATE_ALERTS_WEBHOOK_URL.")
        parser.add_argument("--webhook-ca-file", default="", help="Overrides AUDITGATE_ALERTS_WEBHOOK_CA_FILE.")
        parser.add_argument("--webhook-secret-file", default="",
                            help="Overrides AUDITGATE_ALERTS_WEBHOOK_SECRET_FILE.")  # fmt: skip

    def handle(self, *args: Any, seconds: float, interval: float, once: bool, lock_wait: float | None,
               webhook_url: str, webhook_ca_file: str, webhook_secret_file: str, **options: Any) -> None:  # fmt: skip
        hook = delivery.webhook(webhook_url, webhook_ca_file, webhook_secret_file)
        if once:
            self._report(evaluator.run_pass(hook, lock_wait=30 if lock_wait is None else lock_wait))
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            if not connection.in_atomic_block:  # (never inside a test's transaction)
                close_old_connections()  # a connection MariaDB dropped is replaced, not fatal
            result = evaluator.run_pass(hook, lock_wait=lock_wait or 0)
            if result is not None and (result.fired or result.delivered or result.failed):
                self._report(result)
            if result is not None and result.events_read >= tail.BATCH:
                continue  # behind the trail: the next batch at once
            time.sleep(max(0.0, min(interval - (time.monotonic() - started), deadline - time.monotonic())))

    def _report(self, result: evaluator.Pass | None) -> None:
        if result is None:
            self.stdout.write("another evaluator holds the lock: nothing done")
            return
        self.stdout.write(f"{result.events_read} events read, {result.fired} alerts fired, "
                          f"{result.delivered} delivered, {result.failed} failed")  # fmt: skip
