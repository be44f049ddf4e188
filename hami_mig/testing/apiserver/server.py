"""FakeApiServer: a real HTTP server on 127.0.0.1 that the real kubernetes client talks to, plus test controls."""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes import client

from hami_mig.kube.client import default_retries
from hami_mig.testing.apiserver import handler
from hami_mig.testing.apiserver.errors import StatusError
from hami_mig.testing.apiserver.patching import merge_patch, strategic_merge_patch
from hami_mig.testing.apiserver.store import Obj, Store

_MAX_RECORDED = 10_000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    body: bytes
    watch: bool


@dataclass
class _Fault:
    remaining: int
    status: int | None
    delay_s: float
    method: str | None
    path: str | None
    message: str
    watch: bool | None

    def matches(self, method: str, path: str, watch: bool) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or self.path in path)
            and (self.watch is None or self.watch == watch)
        )


def pod_manifest(
    name: str,
    namespace: str = "default",
    *,
    node: str | None = None,
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
) -> Obj:
    """A minimal valid pod; `limits` go on a single container named "main" when `containers` is not given."""
    if containers is None:
        container: dict[str, Any] = {"name": "main", "image": "busybox"}
        if limits:
            container["resources"] = {"limits": dict(limits)}
        containers = [container]
    spec: dict[str, Any] = {"containers": containers}
    if init_containers:
        spec["initContainers"] = init_containers
    if node:
        spec["nodeName"] = node
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


class FakeApiServer:
    """Pods, nodes, events and configmaps of core/v1 with resourceVersions, selectors, patches and watches.

    Thread-safe; `with FakeApiServer() as api:` starts and stops it. Point the real client at it with
    `api.api_client()` or `KubeClient.from_kubeconfig(api.write_kubeconfig(path))`.
    """

    def __init__(self, *, port: int = 0, history_limit: int = 10_000) -> None:
        self.store = Store(history_limit=history_limit)
        self._port = port
        self._http: handler.ApiHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._faults: list[_Fault] = []
        self._mode: Literal["up", "refuse", "503"] = "up"
        self._stopping = threading.Event()
        self._active_watches = 0
        self.requests: list[RecordedRequest] = []

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        self._serve()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        self._shutdown_http()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def configuration(self) -> client.Configuration:
        """Like production's: same urllib3 retry policy (one retry of a refused connect, nothing else)."""
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.retries = default_retries()
        return configuration

    def api_client(self) -> client.ApiClient:
        return client.ApiClient(self.configuration())

    def write_kubeconfig(self, path: str | Path) -> str:
        """A kubeconfig (http, no auth) pointing at this server."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        Path(path).write_text(yaml.safe_dump(document), encoding="utf-8")
        return str(path)

    # --- outages and faults ---------------------------------------------------------------------
    def down(self, mode: Literal["refuse", "503"] = "refuse") -> None:
        """"refuse": close the port and every open connection; "503": answer everything ServiceUnavailable."""
        self._mode = mode
        self.store.cut_streams()
        if mode == "refuse":
            self._shutdown_http()
        else:
            self._close_connections()

    def up(self) -> None:
        self._mode = "up"
        if self._http is None:
            self._serve()

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        method: str | None = None,
        path: str | None = None,
        watch: bool | None = None,
        message: str = "injected fault",
    ) -> None:
        """The next `count` matching requests (method, path substring, watch or not) answer `status`."""
        with self._lock:
            self._faults.append(_Fault(count, status, 0.0, method, path, message, watch))

    def delay_next(
        self, count: int = 1, seconds: float = 1.0, *, method: str | None = None, path: str | None = None,
        watch: bool | None = None,
    ) -> None:
        """The next `count` matching requests wait `seconds` before being served (and are still applied)."""
        with self._lock:
            self._faults.append(_Fault(count, None, seconds, method, path, "", watch))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def cut_watches(self) -> None:
        """Drop every open watch stream mid-flight (the client sees a broken chunked response)."""
        self.store.cut_streams()

    def compact(self) -> None:
        """Forget watch history: resuming from any earlier resourceVersion now gets 410 Gone."""
        self.store.compact()

    @property
    def active_watches(self) -> int:
        with self._lock:
            return self._active_watches

    @property
    def graceful_pod_deletion(self) -> bool:
        return self.store.graceful_pod_deletion

    @graceful_pod_deletion.setter
    def graceful_pod_deletion(self, value: bool) -> None:
        """When True, deleting a bound pod only marks it terminating; finish_pod_deletion() removes it."""
        self.store.graceful_pod_deletion = value

    # --- state helpers for tests ----------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self.store.cond:
            return self.store.rv

    def add_pod(self, manifest: Obj) -> Obj:
        namespace = (manifest.get("metadata") or {}).get("namespace") or "default"
        return self.store.create("pods", namespace, manifest)

    def add_node(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        capacity: Mapping[str, str] | None = None,
    ) -> Obj:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        status: dict[str, Any] = {"capacity": dict(capacity or {}), "allocatable": dict(capacity or {})}
        return self.store.create("nodes", "", {"metadata": meta, "status": status})

    def add_object(self, resource: str, manifest: Obj) -> Obj:
        namespace = (manifest.get("metadata") or {}).get("namespace") or ("default" if resource != "nodes" else "")
        return self.store.create(resource, namespace, manifest)

    def get_pod(self, namespace: str, name: str) -> Obj:
        return self.store.get("pods", namespace, name)

    def get_node(self, name: str) -> Obj:
        return self.store.get("nodes", "", name)

    def pods(self, node: str | None = None) -> list[Obj]:
        items, _ = self.store.select("pods", None, lambda obj: node is None or obj["spec"].get("nodeName") == node)
        return items

    def events(self, namespace: str | None = None, *, involved_name: str | None = None) -> list[Obj]:
        items, _ = self.store.select(
            "events", namespace, lambda obj: involved_name is None or obj["involvedObject"].get("name") == involved_name
        )
        return items

    def state(self) -> dict[str, list[Obj]]:
        """Every stored object by resource, for assertions and debugging."""
        with self.store.cond:
            result: dict[str, list[Obj]] = {}
            for (resource, _, _), obj in sorted(self.store.objects.items(), key=lambda item: item[0]):
                result.setdefault(resource, []).append(copy.deepcopy(obj))
            return result

    def patch_pod(self, namespace: str, name: str, patch: Obj, *, strategic: bool = False) -> Obj:
        """What another client (the scheduler) would PATCH; status and immutable spec rules apply."""
        patcher = strategic_merge_patch if strategic else merge_patch
        return self.store.update("pods", namespace, name, lambda old: patcher(old, patch))

    def patch_node(self, name: str, patch: Obj) -> Obj:
        return self.store.update("nodes", "", name, lambda old: merge_patch(old, patch))

    def update_pod(self, namespace: str, name: str, mutate: Callable[[Obj], None]) -> Obj:
        """Change any field (spec and status included), as a controller or the kubelet would; one write."""

        def change(old: Obj) -> Obj:
            mutate(old)
            return old

        return self.store.update("pods", namespace, name, change, subresource="*", internal=True)

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> Obj:
        return self.store.update(
            "pods", namespace, name, lambda old: merge_patch(old, {"status": {"phase": phase}}), subresource="status"
        )

    def bind_pod(self, namespace: str, name: str, node: str) -> Obj:
        """The scheduler's binding: sets spec.nodeName once (409 if already bound)."""
        return self.store.update("pods", namespace, name, lambda old: handler.bind(old, node), internal=True)

    def delete_pod(self, namespace: str, name: str, *, grace_period_s: int | None = None) -> Obj:
        options = {} if grace_period_s is None else {"gracePeriodSeconds": grace_period_s}
        return self.store.delete("pods", namespace, name, options)

    def finish_pod_deletion(self, namespace: str, name: str) -> Obj:
        """The kubelet's final delete of a terminating pod."""
        return self.store.remove("pods", namespace, name)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, message: str = "") -> None:
        """Return once predicate() is true (re-checked on every change and request); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store.cond:
                seen = self.store.generation
            if predicate():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s{': ' + message if message else ''}")
            with self.store.cond:
                if self.store.generation == seen:
                    self.store.cond.wait(timeout=min(remaining, 0.05))

    # --- internals used by the HTTP handler -----------------------------------------------------
    def _serve(self) -> None:
        self._stopping.clear()
        with self.store.cond:
            self.store.closed = False
        server = handler.ApiHttpServer(("127.0.0.1", self._port), self)
        self._port = server.server_address[1]
        self._http = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"fake-apiserver-{self._port}")
        self._thread.start()

    def _shutdown_http(self) -> None:
        server, thread = self._http, self._thread
        self._http, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _watch_started(self) -> None:
        with self._lock:
            self._active_watches += 1
        self.store.touch()

    def _watch_ended(self) -> None:
        with self._lock:
            self._active_watches -= 1
        self.store.touch()

    def _before_request(
        self, method: str, path: str, query: Mapping[str, str], content_type: str, body: bytes, watch: bool
    ) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, dict(query), content_type, body, watch))
            if len(self.requests) > _MAX_RECORDED:
                del self.requests[: len(self.requests) - _MAX_RECORDED]
            fault = next((f for f in self._faults if f.matches(method, path, watch)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        self.store.touch()
        if self._mode == "503":
            raise StatusError(503, "the API server is shutting down or overloaded (injected)")
        if fault is None:
            return
        if fault.delay_s:
            self._stopping.wait(fault.delay_s)
        if fault.status is not None:
            raise StatusError(fault.status, fault.message)

    def _bind(self, namespace: str, name: str, body: Any) -> None:
        node = handler.binding_target(body)
        self.store.update("pods", namespace, name, lambda old: handler.bind(old, node), internal=True)
