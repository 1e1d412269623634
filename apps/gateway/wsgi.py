"""The site's WSGI callable: Django's handler for the site, the gateway's own for ``/gw/``.

Lives in the gateway app because the gateway's handler calls its view; ``apps.core.handlers``
keeps the short middleware chain and the test of which paths are the gateway's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

from apps.core.handlers import ShortChainHandler, WSGIApp, is_gateway_path


class GatewayHandler:
    """``/gw/``: the gateway view as the WSGI callable's only work, with no request cycle
    around it.  Django's handler resolves the URL, runs a middleware chain and a view chain
    and checks the response, on every request; for ``/gw/`` the view is known from the path
    and the chain's only effects are three header writes.  This does exactly what the short
    chain did (request id, ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` hooks, the
    request_started/finished signals that manage database connections, Django's 400 and 500
    handling) without the machinery (docs/benchmarks.md: what it saves).  Django's
    request and response objects are kept: every step of the gateway reads them.
    """

    def __init__(self) -> None:
        from django.middleware.clickjacking import XFrameOptionsMiddleware
        from django.middleware.security import SecurityMiddleware

        from apps.core.middleware import request_id_for
        from apps.gateway.views import gateway

        self._request_id_for = request_id_for
        self._security = SecurityMiddleware(_never_called)
        self._frames = XFrameOptionsMiddleware(_never_called)
        # Django's own conversion of exceptions (DisallowedHost -> the 400 handler, which
        # records the refusal; anything else -> 500, logged), as around any view.
        self._view = convert_exception_to_response(lambda request: gateway(request, _upstream_in(request.path_info)))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        set_script_prefix(get_script_name(environ))
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        request.request_id = self._request_id_for(request)  # type: ignore[attr-defined]
        response: Any = self._security.process_request(request) or self._view(request)  # never awaitable here
        response = self._frames.process_response(request, self._security.process_response(request, response))
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        response._handler_class = self.__class__  # close() sends request_finished with it
        response._resource_closers.append(request.close)
        headers = [*response.items(), *(("Set-Cookie", c.OutputString()) for c in response.cookies.values())]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return response


def _never_called(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only the middleware's hooks are called")


_GATEWAY_ROUTE = re.compile(r"^/gw(?:/(?P<upstream>[^/]*))?")


def _upstream_in(path_info: str) -> str | None:
    """The upstream segment, as ``apps.gateway.urls`` names it (None for ``/gw`` itself)."""
    match = _GATEWAY_ROUTE.match(path_info)
    return match.group("upstream") if match else None


def make_application(short_chain_prefixes: tuple[str, ...] = ()) -> WSGIApp:
    """The site's WSGI callable: ``/gw`` takes the gateway's own handler; paths under
    ``short_chain_prefixes`` (the bench's comparison views) the short middleware chain."""
    site = get_wsgi_application()  # django.setup() first: the handlers import middleware and views
    gateway = GatewayHandler()
    short = ShortChainHandler(settings.GATEWAY_MIDDLEWARE)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if is_gateway_path(path):
            return gateway(environ, start_response)
        if short_chain_prefixes and path.startswith(short_chain_prefixes):
            return short(environ, start_response)
        return site(environ, start_response)

    return application
