"""Create an API token for a user (scripts, CI jobs, a new integration) from the host.

The token is printed once, on stdout alone, so that ``create_token ... > file`` keeps it
out of terminals and logs; everything else goes to stderr.  It is audited like one made
through the API (``token.created``, and ``user.created`` for ``--create-user``), the
command being the acting context (``Acting.from_command``); the user, the token and their
events are stored together or not at all.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from apps.audit.acting import Acting
from apps.gateway import actions, tokens
from apps.gateway import scopes as token_scopes
from apps.gateway.management.commands.ensure_admin import write_private
from apps.gateway.models import Upstream
from apps.gateway.models.tokens import normalise_cidrs


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print it once (only it, on stdout; or write it to --output, mode "
        "0600). By default the token may call every upstream through the gateway but not the management API "
        "(give it --scope for that). "
        "Example: create_token alice --label 'report job' --upstream crm --days 30 --output /root/alice.token"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The token's user (must exist and be active).")
        parser.add_argument("--label", required=True, help="What the token is for, e.g. 'nightly export'.")
        parser.add_argument(
            "--days",
            type=int,
            default=settings.TOKEN_MAX_LIFETIME_DAYS,
            help=f"Lifetime in days (default and maximum: {settings.TOKEN_MAX_LIFETIME_DAYS}).",
        )
        parser.add_argument(
            "--upstream",
            action="append",
            default=[],
            metavar="NAME",
            help="Limit the token to this upstream (repeat for several). Default: all upstreams.",
        )
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            choices=token_scopes.SCOPES,
            help="What it may do on the management API (/api/) (repeat for several; policy:write includes "
            "policy:read, tokens:write tokens:read). Default: nothing, the gateway only. The upstream limit "
            "also limits the audit events, upstreams and rules it sees there.",
        )
        parser.add_argument(
            "--management-api", action="store_true", help="Every scope (the former flag, for old scripts)."
        )
        parser.add_argument(
            "--cidr",
            action="append",
            default=[],
            metavar="NETWORK",
            help="Only from this network, e.g. 10.0.0.0/8 (repeat for several). Default: anywhere.",
        )
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create USERNAME first if it does not exist (a service account: no password).",
        )
        parser.add_argument("--output", type=Path, help="Write the token to this file (mode 0600), not stdout.")

    def handle(self, *args: Any, username: str, label: str, days: int, upstream: list[str], scope: list[str],
               management_api: bool, cidr: list[str], output: Path | None, create_user: bool,
               **options: Any) -> None:  # fmt: skip
        acting = Acting.from_command("create_token")
        upstreams = list(Upstream.objects.filter(name__in=upstream))
        missing = sorted(set(upstream) - {u.name for u in upstreams})
        if missing:
            raise CommandError(f"No such upstream: {', '.join(missing)}.")
        with transaction.atomic():  # a user created for a token that cannot be made is not kept
            user, new_user = self._active_user(username, create=create_user, acting=acting)
            try:
                token, plaintext = tokens.create_token(
                    user=user, label=label, expires_at=self._expiry(days), all_upstreams=not upstreams,
                    upstreams=upstreams, scopes=token_scopes.SCOPES if management_api else scope,
                    allowed_cidrs=normalise_cidrs(cidr), acting=acting,
                )  # fmt: skip
            except (ValidationError, ValueError) as exc:
                raise CommandError(str(exc)) from None
        if new_user:
            self.stderr.write(f"created user {username}")
        if output:
            write_private(output, plaintext)
            self.stderr.write(f"created token {token.key_id} for {username}, expires {token.expires_at:%Y-%m-%d}; "
                              f"written to {output}")  # fmt: skip
        else:
            self.stderr.write(f"created token {token.key_id} for {username}, expires {token.expires_at:%Y-%m-%d}; "
                              "it is shown only now:")  # fmt: skip
            self.stdout.write(plaintext)

    @staticmethod
    def _active_user(username: str, *, create: bool, acting: Acting) -> tuple[Any, bool]:
        """The active user ``username`` (created first if ``create`` and absent), and whether it was created."""
        users = get_user_model().objects
        created = create and not users.filter(username=username).exists()
        if created:
            actions.create_user(username, acting=acting)  # no password: it can only use tokens
        user = users.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        return user, created

    @staticmethod
    def _expiry(days: int) -> Any:
        now = timezone.now()
        expires_at = now + timedelta(days=days)
        try:
            tokens.check_expiry(expires_at, now=now, max_lifetime_days=settings.TOKEN_MAX_LIFETIME_DAYS)
        except ValidationError as exc:
            raise CommandError(f"--days: {' '.join(exc.messages)}") from None
        return expires_at
