"""Real servers for the feed tests: an HTTP feed server (http.server in a thread on 127.0.0.1,
ephemeral port) and a medallion TAXII 2.1 server (a subprocess, memory backend). Nothing is
mocked at the HTTP layer: the code under test talks to these over TCP."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest


@dataclass
class Route:
    """What the server answers at one path; tests change it between syncs."""

    body: bytes = b""
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    content_encoding_gzip: bool = False  # Content-Encoding: gzip when the client accepts it
    chunked: bool = False  # no Content-Length: the size cap must stop the stream itself
    delay: float = 0.0  # seconds before answering
    content_type: str = "text/plain"
    require_headers: dict[str, str] = field(default_factory=dict)  # else 401 Unauthorized
    redirect: str | None = None  # answer 302 with this Location


@dataclass
class FeedServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def serve(self, path: str, body: str | bytes, **options: object) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def statuses(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == path]


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def do_GET(self) -> None:
            server.requests.append((self.path, dict(self.headers.items())))
            route = server.routes.get(self.path)
            if route is None:
                self._send(404, b"not found")
                return
            if route.delay:
                time.sleep(route.delay)
            if any(self.headers.get(k) != v for k, v in route.require_headers.items()):
                self._send(401, b"unauthorized")
                return
            if route.redirect is not None:
                self.send_response(302)
                self.send_header("Location", route.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.status != 200:
                self._send(route.status, b"error")
                return
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self._send(304, b"", route)
                return
            # RFC 9110 13.2.2: If-Modified-Since is ignored when If-None-Match is sent.
            if (
                route.last_modified
                and "If-None-Match" not in self.headers
                and self.headers.get("If-Modified-Since") == route.last_modified
            ):
                self._send(304, b"", route)
                return
            body = route.body
            gzipped = route.content_encoding_gzip and "gzip" in self.headers.get(
                "Accept-Encoding", ""
            )
            if gzipped:
                body = gzip.compress(body)
            self._send(200, body, route, gzipped)

        def _send(
            self, status: int, body: bytes, route: Route | None = None, gzipped: bool = False
        ) -> None:
            self.send_response(status)
            if route is not None:
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                self.send_header("Content-Type", route.content_type)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            if status == 304:
                self.end_headers()
                return
            if route is not None and route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for start in range(0, len(body), 65536):
                        piece = body[start : start + 65536]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped at its size cap
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-body (the size-cap tests do, on purpose) are expected; any
    other error in a handler is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def _serving() -> Iterator[FeedServer]:
    state = FeedServer("")
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with _serving() as state:
        yield state


@pytest.fixture
def other_feed_server() -> Iterator[FeedServer]:
    """A second server: another origin (another port), for redirects that leave home."""
    with _serving() as state:
        yield state


# --- TAXII ----------------------------------------------------------------------------------

TAXII_USER = ("feeds", "s3cret")
API_ROOT = "api1"
#: One collection per test: the server is started once per module.
COLLECTION_IDS = (
    "91a7b528-80eb-42ed-a74d-c6fbd5a26116",
    "52892447-4d7e-4f70-b94d-d7f22742ff63",
    "64993447-4d7e-4f70-b94d-d7f33742ee63",
)


@dataclass(frozen=True)
class TaxiiServer:
    base: str

    def collection_url(self, index: int) -> str:
        return f"{self.base}/{API_ROOT}/collections/{COLLECTION_IDS[index]}/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _medallion_data(base: str) -> dict[str, object]:
    return {
        "/discovery": {
            "title": "netwarden test TAXII server",
            "default": f"{base}/{API_ROOT}/",
            "api_roots": [f"{base}/{API_ROOT}/"],
        },
        API_ROOT: {
            "information": {
                "title": "threat feeds",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 9765625,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": f"blocklist {index}",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
                for index, collection_id in enumerate(COLLECTION_IDS)
            ],
        },
    }


@pytest.fixture(scope="module")
def taxii_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaxiiServer]:
    """medallion 3.0 (memory backend, basic auth) as a subprocess on 127.0.0.1."""
    tmp_path = tmp_path_factory.mktemp("taxii")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "taxii-data.json"
    data.write_text(json.dumps(_medallion_data(base)))
    config = tmp_path / "taxii-config.json"
    config.write_text(
        json.dumps(
            {
                "backend": {
                    "module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend",
                    "filename": str(data),
                },
                "users": {TAXII_USER[0]: TAXII_USER[1]},
                "taxii": {"max_page_size": 2},
            }
        )
    )
    medallion = Path(sys.executable).parent / "medallion"
    process = subprocess.Popen(
        [str(medallion), "--host", "127.0.0.1", "--port", str(port), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/taxii2/", timeout=1, auth=TAXII_USER)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("medallion did not start") from None
                time.sleep(0.1)
        yield TaxiiServer(base)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
