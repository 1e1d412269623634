"""The comparison views, each as good as its kind gets (lab2.md measured the defaults)."""

from __future__ import annotations

import os
import threading

import requests
import urllib3
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from revproxy.views import ProxyView

UPSTREAM = os.environ.get("AUDITGATE_BENCH_UPSTREAM", "http://127.0.0.1:18090")
CHAIN_UPSTREAM = os.environ.get("AUDITGATE_BENCH_CHAIN_UPSTREAM", "http://127.0.0.1:18095")  # A of the chain
SLOW_UPSTREAM = os.environ.get("AUDITGATE_BENCH_SLOW_UPSTREAM", "http://127.0.0.1:18096")
_local = threading.local()


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"hello":"world"}\n', content_type="application/json")


def _session() -> requests.Session:
    # One pooled session per thread: requests does not promise a Session is thread-safe.
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


@csrf_exempt
def forward(request: HttpRequest, path: str) -> HttpResponse:
    """The framework floor: forward the GET with a pooled session, relay status, type and body."""
    upstream = _session().get(f"{UPSTREAM}/{path}", timeout=(5, 30))
    return HttpResponse(upstream.content, status=upstream.status_code,
                        content_type=upstream.headers.get("Content-Type"))  # fmt: skip


class TunedProxyView(ProxyView):
    """django-revproxy at its best: its defaults have no timeout, retries and a one-connection pool."""

    upstream = UPSTREAM
    retries = False
    pool = urllib3.PoolManager(maxsize=16, timeout=urllib3.Timeout(connect=5, read=30), retries=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.http = self.pool  # ProxyView.__init__ sets its module-wide default manager


class ChainProxyView(TunedProxyView):
    """The same, to upstream A of the chain scenario (which calls back through TunedProxyView)."""

    upstream = CHAIN_UPSTREAM


class SlowProxyView(TunedProxyView):
    """The same, to the slow upstream."""

    upstream = SLOW_UPSTREAM
