"""Django's handler with a short middleware chain, and which paths are the gateway's.

``/gw/`` is authenticated by token only and exempt from CSRF: sessions, CSRF checks,
cookie authentication, messages and ``CommonMiddleware`` have nothing to do there, yet
they ran on every proxied request.  The gateway's handler (``apps.gateway.wsgi``) calls
the gateway view directly and does only what ``settings.GATEWAY_MIDDLEWARE`` names: the
request id and the response headers every answer of this host carries (``nosniff``,
``X-Frame-Options``).  The short chain itself (``ShortChainHandler``) now serves only the
bench's comparison views, so that they pay no more Django than the gateway did.
Everything else, the API included, keeps ``settings.MIDDLEWARE``.

The gateway view catches database errors and chunked bodies itself (each refusal is
audited), which is why the middleware that answers them elsewhere is not in its chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ShortChainHandler(WSGIHandler):
    """Django's WSGI handler running ``middleware`` instead of ``settings.MIDDLEWARE``.

    Synchronous middleware only, loaded the way ``BaseHandler.load_middleware`` does it
    (hooks included), without its async adaptation, which a WSGI daemon never needs.
    """

    def __init__(self, middleware: Iterable[str]):
        self.middleware = list(middleware)
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Callable[..., Any]] = []
        self._template_response_middleware: list[Callable[..., Any]] = []
        self._exception_middleware: list[Callable[..., Any]] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(self.middleware):
            instance = import_string(path)(handler)
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


def is_gateway_path(path: str, prefixes: tuple[str, ...] = ("/gw/",)) -> bool:
    """``/gw`` itself reaches the gateway view too (it answers and audits the refusal)."""
    return path == "/gw" or path.startswith(prefixes)
