"""Sending a request upstream (apps.gateway.forwarding): the one retry RFC 9112 allows."""

from __future__ import annotations

import socket

import pytest

from apps.gateway import forwarding
from apps.gateway.models import Upstream
from tests.upstream import _RawServer

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ClosesFirstConnection(_RawServer):
    """Closes its first connection after reading the request, without answering; answers the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            if self.requests > 1:
                conn.sendall(ANSWER)


def _open(server: ClosesFirstConnection, method: str, body: forwarding.RequestBody | None = None):
    upstream = Upstream(name="flaky", base_url=server.url, internal=True)
    return forwarding.open_upstream(upstream, method, f"{server.url}/x", forwarding.urllib3.HTTPHeaderDict(), body,
                                    forwarding.Deadline(10))  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_an_idempotent_request_without_a_body_is_sent_once_more_when_closed_before_an_answer(method):
    with ClosesFirstConnection() as server:
        response = _open(server, method)
        assert response.status == 200
        assert server.requests == 2


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_any_other_method_is_never_sent_twice(method):
    with ClosesFirstConnection() as server:
        with pytest.raises(forwarding.urllib3.exceptions.ProtocolError):
            _open(server, method)
        assert server.requests == 1
