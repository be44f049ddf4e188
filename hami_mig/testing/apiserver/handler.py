"""HTTP/1.1 front of the fake API server: routing, JSON bodies, chunked watch streams, injected faults."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hami_mig.testing.apiserver import selectors
from hami_mig.testing.apiserver.errors import StatusError
from hami_mig.testing.apiserver.patching import json_patch, merge_patch, strategic_merge_patch
from hami_mig.testing.apiserver.store import RESOURCES, Change, Obj, now_rfc3339

if TYPE_CHECKING:
    from hami_mig.testing.apiserver.server import FakeApiServer

_PATCHERS = {
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
    "application/json-patch+json": json_patch,
}


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeApiServer) -> None:
        self.fake = fake
        super().__init__(address, ApiHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (an agent killed by a crash test) is normal here, as on a real
        API server; anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK cost 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing -------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        is_watch = method == "GET" and query.get("watch") in ("true", "1")
        try:
            fake._before_request(method, url.path, query, content_type, raw, is_watch)
            body = _json_body(raw) if raw else None
            if is_watch:
                self._watch(url.path, query)
                return
            code, payload = self._route(method, url.path, query, content_type, body)
            self._send_json(code, payload)
        except StatusError as exc:
            headers = {"Retry-After": "1"} if exc.code in (429, 503) else {}
            self._send_json(exc.code, exc.status(), headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug in the fake must show as a clear 500, not a hang
            self._send_json(500, StatusError(500, f"fake apiserver bug: {exc!r}").status())

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str, body: Any) -> tuple[int, Any]:
        store = self.server.fake.store
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, "ok"
        if path == "/version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-hami-mig-fake", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        resource, namespace, name, sub = _parse_path(path)
        namespaced = RESOURCES[resource][1]
        ns = namespace or ""
        if method == "GET" and name is None:
            items, rv = store.select(resource, namespace, _predicate(resource, query))
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
            kind = RESOURCES[resource][0]
            listing = {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}
            return 200, {**listing, "items": items}
        if name is None:
            if method != "POST" or (namespaced and namespace is None):
                raise StatusError(405, f"{method} is not supported on {path}")
            return 201, store.create(resource, ns, body)
        if sub == "binding" and method != "POST":
            raise StatusError(405, f"{method} is not supported on {path}")
        if method == "GET":
            return 200, store.get(resource, ns, name)
        if method == "POST" and sub == "binding" and resource == "pods":
            self.server.fake._bind(ns, name, body)
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if method == "PATCH":
            patcher = _PATCHERS.get(content_type)
            if patcher is None:
                raise StatusError(415, f"the body of the request was in an unknown format - accepted media types "
                                       f"include: {', '.join(_PATCHERS)}")
            if body is None:
                raise StatusError(400, "the body of the request is empty")
            return 200, store.update(resource, ns, name, lambda old: patcher(old, body), subresource=sub or "")
        if method == "PUT":
            if not isinstance(body, dict):
                raise StatusError(400, "the body of the request was in an unknown format")
            if namespaced:
                body.setdefault("metadata", {}).setdefault("namespace", ns)
            return 200, store.update(resource, ns, name, lambda old: body, subresource=sub or "")
        if method == "DELETE" and not sub:
            options = dict(body) if isinstance(body, dict) else {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            return 200, store.delete(resource, ns, name, options)
        raise StatusError(405, f"{method} is not supported on {path}")

    def _watch(self, path: str, query: dict[str, str]) -> None:
        fake = self.server.fake
        store = fake.store
        resource, namespace, name, _ = _parse_path(path)
        if name is not None:
            raise StatusError(405, "watch a collection with ?watch=true (fieldSelector=metadata.name=... for one)")
        predicate = _predicate(resource, query)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        requested = query.get("resourceVersion", "")
        if requested not in ("", "0") and not requested.isdigit():
            raise StatusError(400, f"invalid resource version {requested!r}")
        with store.cond:
            epoch = store.stream_epoch
            if requested in ("", "0"):
                cursor = store.rv
                initial, _ = store.select(resource, namespace, predicate)
                pending: list[dict[str, Any]] = [{"type": "ADDED", "object": obj} for obj in initial]
            else:
                cursor = int(requested)
                pending = []
                try:
                    store.changes_after(cursor)
                except StatusError as exc:
                    pending = [{"type": "ERROR", "object": exc.status()}]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        fake._watch_started()
        try:
            deadline = time.monotonic() + timeout if timeout is not None else None
            finished = False
            while True:
                for event in pending:
                    self._chunk(json.dumps(event).encode() + b"\n")
                    finished = finished or event["type"] == "ERROR"
                if finished:
                    self._end_chunks()
                    return
                with store.cond:
                    while True:
                        if store.closed or store.stream_epoch != epoch:
                            self._abort()
                            return
                        try:
                            changes = store.changes_after(cursor)
                        except StatusError as exc:
                            pending = [{"type": "ERROR", "object": exc.status()}]
                            break
                        if changes:
                            pending = [e for e in (_event(c, namespace, predicate) for c in changes) if e is not None]
                            cursor = changes[-1].rv
                            break
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            finished = True
                            pending = [_bookmark(resource, cursor)] if bookmarks else []
                            break
                        store.cond.wait(0.5 if remaining is None else min(remaining, 0.5))
        except OSError:
            self.close_connection = True
        finally:
            fake._watch_ended()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _abort(self) -> None:
        """Cut the stream mid-chunk, like a dropped connection or an API server restart."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _bookmark(resource: str, rv: int) -> dict[str, Any]:
    kind = RESOURCES[resource][0]
    return {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}}


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StatusError(400, f"the body of the request could not be decoded as JSON: {exc}") from None


def _parse_path(path: str) -> tuple[str, str | None, str | None, str | None]:
    """/api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]] -> (resource, namespace, name, subresource)."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] != ["api", "v1"]:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    rest, namespace = parts[2:], None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in RESOURCES or len(rest) > 3:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    resource = rest[0]
    if namespace is not None and not RESOURCES[resource][1]:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    allowed = {"pods": ("status", "binding"), "nodes": ("status",)}.get(resource, ())
    if sub is not None and sub not in allowed:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    if name is not None and RESOURCES[resource][1] and namespace is None:
        raise StatusError(404, f"the server could not find the requested resource ({path})")
    return resource, namespace, name, sub


def _predicate(resource: str, query: dict[str, str]) -> selectors.Predicate:
    by_label = selectors.label_selector(query.get("labelSelector"))
    by_field = selectors.field_selector(resource, query.get("fieldSelector"))
    return lambda obj: by_label(obj) and by_field(obj)


def _event(change: Change, namespace: str | None, predicate: selectors.Predicate) -> dict[str, Any] | None:
    """The event a filtered watch sees: objects entering the filter are ADDED, leaving it DELETED."""
    if namespace is not None and change.namespace != namespace:
        return None
    was = change.old is not None and predicate(change.old)
    now = predicate(change.new)
    if change.type == "DELETED":
        kind = "DELETED" if was or now else None
    elif change.type == "ADDED":
        kind = "ADDED" if now else None
    else:
        kind = {(True, True): "MODIFIED", (False, True): "ADDED", (True, False): "DELETED"}.get((was, now))
    return {"type": kind, "object": change.new} if kind else None


def binding_target(body: Any) -> str:
    target = body.get("target") if isinstance(body, dict) else None
    node = target.get("name") if isinstance(target, dict) else None
    if not isinstance(node, str) or not node:
        raise StatusError(422, "Binding: target.name: Required value")
    return node


def bind(obj: Obj, node: str) -> Obj:
    spec = obj.setdefault("spec", {})
    if spec.get("nodeName"):
        raise StatusError(409, f'pod {obj["metadata"]["name"]} is already assigned to node "{spec["nodeName"]}"')
    spec["nodeName"] = node
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()})
    return obj
