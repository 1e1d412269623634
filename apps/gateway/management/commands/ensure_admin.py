"""Create the first administrator and its API token, once.

Used by the Ansible ``app`` role.  Re-running changes nothing: an existing user
keeps its password and a token file that still authenticates is never
rotated.  Output lines start with ``created`` when something was created, so
the role can report ``changed`` exactly then; otherwise it prints ``unchanged``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


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

    @transaction.atomic
    def handle(
        self, *args: Any, username: str, email: str, token_file: Path, password_file: Path, **options: Any
    ) -> None:
        created = []
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(24)
            user = user_model.objects.create_superuser(username=username, email=email, password=password)
            write_private(password_file, password)
            created.append(f"created user {username} (password in {password_file})")
        if not self._token_file_valid(token_file, user):
            token, _ = Token.objects.get_or_create(user=user)
            write_private(token_file, token.key)
            created.append(f"created token file {token_file}")
        for line in created or ["unchanged"]:
            self.stdout.write(line)

    @staticmethod
    def _token_file_valid(token_file: Path, user: Any) -> bool:
        if not token_file.is_file():
            return False
        key = token_file.read_text(encoding="utf-8").strip()
        return Token.objects.filter(key=key, user=user).exists()
