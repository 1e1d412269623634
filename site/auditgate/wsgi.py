"""WSGI entry point, loaded by mod_wsgi in daemon mode (see apache/vhost.conf).

mod_wsgi's ``python-path`` puts the release root and ``site/`` on sys.path; the
lines below do the same so the script also works under ``mod_wsgi-express``.
The gateway (``/gw/``) runs a shorter middleware chain than the rest (apps.core.handlers).
"""

import os
import sys
from pathlib import Path

_SITE_DIR = Path(__file__).resolve().parent.parent
for _path in (str(_SITE_DIR), str(_SITE_DIR.parent)):
    if _path not in sys.path:
        sys.path.append(_path)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditgate.settings")

from apps.gateway.wsgi import make_application  # noqa: E402

application = make_application()
