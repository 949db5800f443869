"""The mock hub's HTTP server: routing, request log, and hooks for quotas and faults."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def hub_modules() -> list[Any]:
    """Every module of this package with a ``register(hub)`` function: one per hub."""
    import importlib
    import pkgutil

    modules = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name in ("server", "__main__"):
            continue
        module = importlib.import_module(f"tests.mockhub.{info.name}")
        if callable(getattr(module, "register", None)):
            modules.append(module)
    return modules


@dataclass
class MockRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_target: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])


@dataclass
class MockResponse:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None,
             ) -> MockResponse:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status=status, body=body, headers=list(headers or []))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8",
             headers: list[tuple[str, str]] | None = None) -> MockResponse:
        return cls(status=status, body=text.encode(), headers=list(headers or []),
                   content_type=content_type)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


Handler = Callable[["MockHub", MockRequest, re.Match[str]], MockResponse]
BeforeHook = Callable[["MockHub", MockRequest], MockResponse | None]
AfterHook = Callable[["MockHub", MockRequest, MockResponse], MockResponse]


class MockHub:
    """All hubs on one loopback server. ``hub.url`` is its base URL once started.

    ``clean=True`` serves the same hubs without the fixtures that are faulty on purpose (each
    hub module declares its own and leaves them out in ``register`` when ``hub.clean``): a
    whole crawl of it logs no warning. The tests keep the default, faults included.
    """

    def __init__(self, fixtures: Path | str = FIXTURES, host: str = "127.0.0.1",
                 port: int = 0, clean: bool = False) -> None:
        self.fixtures = Path(fixtures)
        self.host = host
        self.port = port
        self.clean = clean
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.before: list[BeforeHook] = []
        self.after: list[AfterHook] = []
        self.log: list[MockRequest] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for module in hub_modules():
            module.register(self)

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("mock hub not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def requests(self, path_prefix: str = "") -> list[MockRequest]:
        with self.lock:
            return [r for r in self.log if r.path.startswith(path_prefix)]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def dispatch(self, req: MockRequest) -> MockResponse:
        with self.lock:
            self.log.append(req)
        for hook in self.before:
            early = hook(self, req)
            if early is not None:
                return self._after(req, early)
        for method, pattern, handler in self.routes:
            if method != req.method:
                continue
            m = pattern.fullmatch(req.path)
            if m:
                return self._after(req, handler(self, req, m))
        return self._after(req, MockResponse.json({"error": "Not Found"}, status=404))

    def _after(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        for hook in self.after:
            resp = hook(self, req, resp)
        return resp

    def start(self) -> MockHub:
        hub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and the
            # client's delayed ACK stall each small answer ~40 ms (~200 requests/s at most).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = MockRequest(
                    method=self.command, path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body, raw_target=self.path,
                )
                try:
                    resp = hub.dispatch(req)
                except Exception as exc:  # a mock bug must show up as a 500, not a hang
                    resp = MockResponse.json({"error": f"mock error: {exc!r}"}, status=500)
                delay = getattr(resp, "delay", 0)
                if delay:
                    threading.Event().wait(delay)
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                declared = getattr(resp, "declared_length", None)
                self.send_header("Content-Length", str(declared or len(resp.body)))
                for k, v in resp.headers:
                    self.send_header(k, v)
                if getattr(resp, "close", False):
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    chunks = getattr(resp, "chunks", None)  # a body generated as it is sent
                    if chunks is None:
                        self.wfile.write(resp.body)
                    else:
                        try:
                            for chunk in chunks:
                                self.wfile.write(chunk)
                        except OSError:  # the client went away (or was killed)
                            self.close_connection = True

            do_GET = _handle
            do_POST = _handle
            do_HEAD = _handle

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self._server = _Server((self.host, self.port), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="mockhub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MockHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def base_url(self, req: MockRequest) -> str:
        """The absolute base the client used (hubs put absolute URLs in ``Link``)."""
        return f"http://{req.headers.get('host', f'{self.host}:{self.port}')}"
