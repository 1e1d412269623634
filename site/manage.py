#!/usr/bin/env python3
"""Django's command-line utility for auditgate."""

import os
import sys
from pathlib import Path

# The repository root holds the ``apps`` package; this folder holds ``auditgate``.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditgate.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
