"""The WebSocket relay's process: mod_wsgi imports this into the ``auditgate-ws`` daemon group
(``WSGIImportScript``, apache/vhost.conf "WebSockets"); no WSGI request is ever routed there.

Inside Apache's own supervision the relay starts and stops with Apache, with or without
systemd, and a daemon process that dies is started again by Apache.  The script sets up
Django, runs the relay's event loop (``apps.gateway.wsrelay``) in a thread and returns, as
an import script must.  When mod_wsgi stops the process (Apache stop, reload, a deploy's
SIGUSR1), every open WebSocket is closed with 1001 and its event finished before the
process goes.  Should the loop die anyway, the process exits, and Apache starts another.
"""

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path

_SITE_DIR = Path(__file__).resolve().parent.parent
for _path in (str(_SITE_DIR), str(_SITE_DIR.parent)):
    if _path not in sys.path:
        sys.path.append(_path)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditgate.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from apps.gateway.wsrelay import CLOSE_TIMEOUT, WebSocketRelay  # noqa: E402

logger = logging.getLogger("apps.gateway.wsrelay")
relay = WebSocketRelay(settings.WEBSOCKET_RELAY_SOCKET)
loop = asyncio.new_event_loop()
_stopping = threading.Event()


def _run() -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(relay.serve())
    except BaseException:
        logger.exception("The WebSocket relay failed")
    if not _stopping.is_set():
        # Not asked to stop: exit, and Apache starts a new daemon process.
        logger.error("The WebSocket relay stopped unasked: exiting so that Apache restarts it")
        os._exit(1)


def stop(*args: object, **kwargs: object) -> None:
    """Close every WebSocket with 1001, record each, then let the process go."""
    if _stopping.is_set():
        return
    _stopping.set()
    loop.call_soon_threadsafe(relay.stop)
    _thread.join(timeout=CLOSE_TIMEOUT * 2 + 1)


_thread = threading.Thread(target=_run, name="websocket-relay", daemon=True)
_thread.start()

try:
    import mod_wsgi  # type: ignore[import-untyped]

    mod_wsgi.subscribe_shutdown(stop)
except (ImportError, AttributeError):  # outside mod_wsgi (a test, a shell)
    import atexit

    atexit.register(stop)
