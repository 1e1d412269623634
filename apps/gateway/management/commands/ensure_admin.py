"""Create the first administrator and its API token, once.

Used by the Ansible ``app`` role.  Re-running changes nothing: an existing user
keeps its password and a token file that still authenticates (as this user,
with every management scope) is never rotated, unless its token expires within
``RENEW_WITHIN_DAYS``: then a new token replaces it (the old one is left to
expire, so another host's copy keeps working meanwhile).  A file that no longer
authenticates (for instance an old 40-hex DRF key) is replaced.  Output lines
start with ``created`` when something was created, so the role can report
``changed`` exactly then; otherwise it prints ``unchanged``.

What it creates is audited (``user.created``, ``token.created``) with the command as
the acting context (``Acting.from_command``), in one transaction with the changes.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from apps.audit.acting import Acting
from apps.gateway import actions, tokens
from apps.gateway import scopes as token_scopes

DEPLOY_LABEL = "admin (deploy)"
RENEW_WITHIN_DAYS = 30


def write_private(path: Path, content: str) -> None:
    """Write ``content`` readable by its owner only (the file holds a credential)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content + "\n")


class Command(BaseCommand):
    help = "Create the admin user, its password file and its API token file if they do not exist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument("--token-file", type=Path, required=True)
        parser.add_argument("--password-file", type=Path, required=True)
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=365,
            help="Lifetime of a new deploy token (may exceed TOKEN_MAX_LIFETIME_DAYS); renewed when 30 days remain.",
        )

    @transaction.atomic
    def handle(
        self,
        *args: Any,
        username: str,
        email: str,
        token_file: Path,
        password_file: Path,
        expires_in_days: int,
        **options: Any,
    ) -> None:
        if expires_in_days <= RENEW_WITHIN_DAYS:
            raise CommandError(f"--expires-in-days must exceed {RENEW_WITHIN_DAYS}, or every run would renew.")
        acting = Acting.from_command("ensure_admin")
        created = []
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(24)
            user = actions.create_user(username, acting=acting, superuser=True, email=email, password=password)
            write_private(password_file, password)
            created.append(f"created user {username} (password in {password_file})")
        state = self._token_file_state(token_file, user)
        if state != "valid":
            self._create_token_file(token_file, user, expires_in_days, acting)
            created.append(f"created token file {token_file}" + (" (renewed)" if state == "expiring" else ""))
        for line in created or ["unchanged"]:
            self.stdout.write(line)

    @staticmethod
    def _token_file_state(token_file: Path, user: Any) -> str:
        """Whether the file holds a working management token of ``user``: ``valid``,
        ``expiring`` (within RENEW_WITHIN_DAYS) or ``missing`` (absent or not working)."""
        if not token_file.is_file():
            return "missing"
        now = timezone.now()
        token = tokens.find_token(token_file.read_text(encoding="utf-8").strip())
        if token is None or token.user_id != user.pk or not token.is_usable(now):
            return "missing"
        if not token.all_upstreams or set(token.scopes) != set(token_scopes.SCOPES):
            return "missing"  # e.g. a scope added since: the deploy's token has them all
        return "expiring" if token.expires_at <= now + timedelta(days=RENEW_WITHIN_DAYS) else "valid"

    @staticmethod
    def _create_token_file(token_file: Path, user: AbstractBaseUser, expires_in_days: int, acting: Acting) -> None:
        _, plaintext = tokens.create_token(
            user=user,
            label=DEPLOY_LABEL,
            expires_at=timezone.now() + timedelta(days=expires_in_days),
            all_upstreams=True,
            scopes=token_scopes.SCOPES,
            max_lifetime_days=expires_in_days,
            acting=acting,
        )
        write_private(token_file, plaintext)
