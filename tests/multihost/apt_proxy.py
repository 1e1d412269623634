"""A small allow-listed HTTP forward proxy for apt inside the multi-host rig.

It serves GET and HEAD with absolute ``http://`` URLs on the one mirror host it is given
(``--allow-host``) only (anything else gets 403, there is no CONNECT), forwards them over the
controller's own network, streams the answer back and keeps a copy of every complete ``.deb``
under the cache directory, keyed by the URL path; a cached ``.deb`` is served without going out. Standard library only.

    python3 tests/multihost/apt_proxy.py --bind 10.231.78.1 --port 3142 \
        --cache-dir /var/cache/auditgate-multihost/debs --allow-host MIRROR-HOST
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

# The Debian mirror host (``--allow-host``: the rig passes the one this machine's apt uses).
ALLOWED_HOST = ""
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 60.0

# Request headers passed upstream; everything else (Proxy-*, Connection, ...) stays here.
FORWARD_REQUEST_HEADERS = (
    "Accept",
    "Cache-Control",
    "If-Modified-Since",
    "If-None-Match",
    "If-Range",
    "Pragma",
    "Range",
    "User-Agent",
)
# Validators and ranges make no sense when the proxy wants the whole .deb for its cache.
CACHE_STRIPPED_HEADERS = ("If-Modified-Since", "If-None-Match", "If-Range", "Range")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class AptProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.log_lock = threading.Lock()
        super().__init__(address, AptProxyHandler)


class AptProxyHandler(BaseHTTPRequestHandler):
    server: AptProxyServer
    protocol_version = "HTTP/1.1"
    server_version = "agmh-apt-proxy/1"
    _upstream: http.client.HTTPConnection | None = None

    # -- refusals ---------------------------------------------------------------------------
    def _forbid(self, reason: str = "forbidden") -> None:
        body = f"{reason}\n".encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_CONNECT(self) -> None:
        self.close_connection = True
        self._forbid("CONNECT is not allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT

    # -- allowed methods --------------------------------------------------------------------
    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def log_message(self, format: str, *args: object) -> None:
        with self.server.log_lock:
            sys.stderr.write(f"{self.log_date_time_string()} {self.client_address[0]} {format % args}\n")
            sys.stderr.flush()

    # -- implementation ---------------------------------------------------------------------
    def _target(self) -> str | None:
        """The upstream path (with query) for an allowed absolute URL, else None."""
        if not self.path.startswith("http://"):
            return None
        try:
            url = urlsplit(self.path)
            port = url.port
        except ValueError:
            return None
        if url.scheme != "http" or url.hostname != ALLOWED_HOST or port not in (None, 80):
            return None
        if url.username is not None or url.password is not None:
            return None
        path = url.path or "/"
        return f"{path}?{url.query}" if url.query else path

    def _cache_file(self, target: str) -> Path | None:
        """Where a .deb at this URL path is cached, or None when it is not cacheable."""
        if "?" in target or not target.endswith(".deb"):
            return None
        parts = PurePosixPath(unquote(target)).parts
        if len(parts) < 2 or parts[0] != "/":
            return None
        rest = parts[1:]
        if any(p in ("", ".", "..") or p.startswith(".") or "\0" in p for p in rest):
            return None
        return self.server.cache_dir.joinpath(*rest)

    def _connection(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(ALLOWED_HOST, 80, timeout=UPSTREAM_TIMEOUT)
        return self._upstream

    def _drop_connection(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _request_upstream(self, target: str, stripped: tuple[str, ...]) -> http.client.HTTPResponse:
        headers = {"Host": ALLOWED_HOST}
        for name in FORWARD_REQUEST_HEADERS:
            value = self.headers.get(name)
            if value is not None and name not in stripped:
                headers[name] = value
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(self.command, target, headers=headers)
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                self._drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _serve_cached(self, path: Path) -> bool:
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return False
        with fh:
            st = os.fstat(fh.fileno())
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.debian.binary-package")
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
            self.send_header("X-Agmh-Cache", "HIT")
            self.log_message("hit %s", path)
            self.end_headers()
            if self.command == "GET":
                while chunk := fh.read(CHUNK):
                    self.wfile.write(chunk)
        return True

    def _proxy(self) -> None:
        target = self._target()
        if target is None:
            self._forbid(f"only http://{ALLOWED_HOST}/ is allowed")
            return
        cache_path = self._cache_file(target)
        if cache_path is not None and self._serve_cached(cache_path):
            return
        caching = cache_path is not None and self.command == "GET"
        try:
            resp = self._request_upstream(target, CACHE_STRIPPED_HEADERS if caching else ())
        except (OSError, http.client.HTTPException) as exc:
            self.log_message("upstream error for %s: %r", target, exc)
            body = b"upstream unreachable\n"
            self.send_response(502)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return
        try:
            self._relay(resp, cache_path if caching else None)
        finally:
            if resp.will_close:
                self._drop_connection()

    def _relay(self, resp: http.client.HTTPResponse, cache_path: Path | None) -> None:
        length_header = resp.getheader("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        has_body = self.command != "HEAD" and resp.status not in (204, 304) and resp.status >= 200
        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if has_body and length is None:
            # No length known: the end of the answer is the end of the connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not has_body:
            resp.read()
            return
        if resp.status != 200 or length is None:
            cache_path = None
        tmp: tempfile._TemporaryFileWrapper[bytes] | None = None
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
                dir=cache_path.parent, prefix=".tmp-", suffix=".part", delete=False
            )
        received = 0
        complete = False
        try:
            while chunk := resp.read(CHUNK):
                received += len(chunk)
                if tmp is not None:
                    tmp.write(chunk)
                self.wfile.write(chunk)
            self.wfile.flush()
            complete = received == length if length is not None else True
        except (OSError, http.client.HTTPException):
            self.close_connection = True
            self._drop_connection()
            raise
        finally:
            if tmp is not None:
                tmp.close()
                if complete and cache_path is not None:
                    os.replace(tmp.name, cache_path)
                    self.log_message("cached %s (%d bytes)", cache_path, received)
                else:
                    Path(tmp.name).unlink(missing_ok=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._drop_connection()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, help="address to listen on (the rig's bridge address)")
    parser.add_argument("--port", type=int, default=3142)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--allow-host", required=True, help="the only host requests may go to (a Debian mirror)")
    args = parser.parse_args(argv)
    global ALLOWED_HOST
    ALLOWED_HOST = args.allow_host
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    server = AptProxyServer((args.bind, args.port), args.cache_dir)
    sys.stderr.write(f"agmh apt proxy listening on {args.bind}:{args.port}, cache {args.cache_dir}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
