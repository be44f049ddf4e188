"""HTTP(S) front of the extender: POST /filter /prioritize /bind /webhook, GET /healthz.

A body that is not the JSON document an endpoint takes gets 400 with the reason; an unexpected
failure gets 500 with one line (the traceback goes to the log, never to the caller).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.protocol import ProtocolError

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ExtenderHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], extender: Extender) -> None:
        self.extender = extender
        self.routes: dict[str, Callable[[Any], Any]] = {
            "/filter": extender.filter,
            "/prioritize": extender.prioritize,
            "/bind": extender.bind,
            "/webhook": extender.admit,
            "/mutate": extender.admit,
        }
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)  # TLS handshakes, resets


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection gives its thread back after this
    server: ExtenderHttpServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()
        if isinstance(self.connection, socket.socket):
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain")
        elif path in self.server.routes:
            self._error(405, f"{path} takes POST")
        else:
            self._error(404, f"no such endpoint {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            route = self.server.routes.get(path)
            if route is None:
                self.close_connection = True  # its body is left unread
                raise HttpError(404, f"no such endpoint {path}; use /filter, /prioritize, /bind or /webhook")
            answer = route(self._json())
            self._send(200, json.dumps(answer).encode())
        except HttpError as exc:
            self._error(exc.code, str(exc))
        except ProtocolError as exc:
            self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("%s failed", path)
            self._error(500, f"internal error in {path}: {type(exc).__name__}: {exc}")

    def _json(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise HttpError(411, "send the body with a Content-Length")
        try:
            length = int(length_text or 0)
        except ValueError:
            raise HttpError(400, f"bad Content-Length {length_text!r}") from None
        if length <= 0:
            raise HttpError(400, "empty body: a JSON document is required")
        if length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, f"body of {length} bytes is over the {MAX_BODY} byte limit")
        raw = self.rfile.read(length)
        if len(raw) < length:
            self.close_connection = True
            raise HttpError(400, f"body ended after {len(raw)} of {length} bytes")
        try:
            return json.loads(raw)
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"malformed JSON: not UTF-8 ({exc.reason})") from None
        except ValueError as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from None
        except RecursionError:
            raise HttpError(400, "malformed JSON: nested too deeply") from None

    def _error(self, code: int, message: str) -> None:
        self._send(code, json.dumps({"error": message}).encode())

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


class Certificates:
    """The serving certificate, re-read when its files change (cert-manager renewals, Secret updates the kubelet
    projects into the pod), so new connections get the new one without a restart."""

    def __init__(self, cert: str, key: str | None, *, check_every_s: float = 10.0) -> None:
        self.cert = cert
        self.key = key
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self.context = self._load()
        self.context.sni_callback = self._pick
        self._checked = time.monotonic()

    def _files_stamp(self) -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime for p in (self.cert, self.key) if p)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def current(self) -> ssl.SSLContext:
        with self._lock:
            if time.monotonic() - self._checked < self.check_every_s:
                return self.context
            self._checked = time.monotonic()
            try:
                stamp = self._files_stamp()
                if stamp != self._stamp:
                    fresh = self._load()
                    fresh.sni_callback = self._pick
                    self.context, self._stamp = fresh, stamp
                    log.warning("serving certificate %s reloaded", self.cert)
            except (OSError, ssl.SSLError) as exc:
                log.error("cannot reload the serving certificate %s: %s; keeping the previous one", self.cert, exc)
            return self.context

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext) -> None:
        """OpenSSL's ClientHello callback (called with or without SNI): swap in the newest certificate."""
        current = self.current()
        if current is not context:
            sock.context = current


class ExtenderServer:
    """`with ExtenderServer(extender, port=0) as s:` serves on s.url; HTTPS when cert and key are given."""

    def __init__(self, extender: Extender, *, host: str = "127.0.0.1", port: int = 0,
                 cert: str | None = None, key: str | None = None, cert_check_s: float = 10.0) -> None:
        self._http = ExtenderHttpServer((host, port), extender)
        self.tls = cert is not None
        self.certificates: Certificates | None = None
        if cert is not None:
            try:
                self.certificates = Certificates(cert, key, check_every_s=cert_check_s)
            except BaseException:
                self._http.server_close()
                raise
            # The handshake runs in the request's thread, so a slow client never stalls accept().
            self._http.socket = self.certificates.context.wrap_socket(self._http.socket, server_side=True,
                                                                      do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(self._http.routes)

    @property
    def url(self) -> str:
        host = str(self._http.server_address[0])
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> ExtenderServer:
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"hami-scheduler-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever() that must have started
            self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ExtenderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
