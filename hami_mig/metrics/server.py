"""The agent's HTTP endpoint: /metrics (Prometheus text or OpenMetrics), /healthz, /readyz."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from hami_mig.metrics.collector import AgentRegistry

log = logging.getLogger(__name__)

ReadyFn = Callable[[], tuple[bool, str]]
DEFAULT_PORT = 31993  # HAMi's scheduler metrics NodePort
_GZIP_MIN_BYTES = 1024


def always_ready() -> tuple[bool, str]:
    return True, "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, ready_fn: ReadyFn) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.registry = registry
        self.ready_fn = ready_fn
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10.0  # a stalled client cannot hold a thread for longer
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall on keep-alive
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._route(body=True)

    def do_HEAD(self) -> None:
        self._route(body=False)

    def _route(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._metrics(body)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8", body)
            elif path == "/readyz":
                self._ready(body)
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8", body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer

    def _metrics(self, body: bool) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        registry = self.server.registry
        try:
            # The agent's registry reuses the snapshot's series as rendered once per snapshot: a scrape during
            # an Allocate burst renders only the counters.
            payload = registry.exposition(encoder) if isinstance(registry, AgentRegistry) else encoder(registry)
        except Exception as exc:  # a collector bug answers 500, the server keeps serving
            log.exception("metrics: collecting failed")
            self._send(500, f"collecting metrics failed: {exc}\n".encode(), "text/plain; charset=utf-8", body)
            return
        encoding = None
        if len(payload) >= _GZIP_MIN_BYTES and "gzip" in self.headers.get("Accept-Encoding", ""):
            payload, encoding = gzip.compress(payload, compresslevel=1), "gzip"
        self._send(200, payload, content_type, body, encoding)

    def _ready(self, body: bool) -> None:
        try:
            ready, reason = self.server.ready_fn()
        except Exception as exc:
            log.exception("metrics: readiness check failed")
            ready, reason = False, f"readiness check failed: {exc}"
        text = (reason or ("ok" if ready else "not ready")).rstrip("\n") + "\n"
        self._send(200 if ready else 503, text.encode(), "text/plain; charset=utf-8", body)

    def _send(self, code: int, payload: bytes, content_type: str, body: bool, encoding: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http %s: " + format, self.address_string(), *args)


class MetricsServer:
    """Threaded HTTP server for a registry; bind port 0 to get a free port (read `.port` after start)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        port: int = DEFAULT_PORT,
        host: str = "0.0.0.0",
        ready_fn: ReadyFn = always_ready,
    ) -> None:
        self.registry = registry
        self.host = host
        self._port = port
        self.ready_fn = ready_fn
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the real one when 0 was asked for), else the configured one."""
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._httpd is not None:
            raise RuntimeError("metrics server already started")
        try:
            self._httpd = _Server((self.host, self._port), self.registry, lambda: self.ready_fn())
        except OSError as exc:
            where = f"{self.host}:{self._port}"
            raise OSError(exc.errno, f"metrics server cannot listen on {where}: {exc.strerror}") from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="hami-mig-metrics", daemon=True)
        self._thread.start()
        log.info("metrics: serving /metrics, /healthz, /readyz on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
