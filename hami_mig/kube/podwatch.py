"""A list-then-watch loop over a node's pods that survives timeouts, cut streams, outages and 410 Gone."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from hami_mig.kube.errors import ApiGone, ApiRejected, ApiUnavailable, api_call

if TYPE_CHECKING:
    from hami_mig.kube.client import KubeClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodEvent:
    """One watch event; `pod` is None only for BOOKMARK."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    pod: client.V1Pod | None
    resource_version: str


class PodWatch:
    """One watch request on a node's pods; ends at the server's timeout, raises ApiGone when the version is too old."""

    def __init__(
        self, kube: KubeClient, node: str, resource_version: str, timeout_seconds: int, label_selector: str | None
    ) -> None:
        self._kube = kube
        self._node = node
        self._timeout_seconds = timeout_seconds
        self._label_selector = label_selector
        self._decoder = watch.Watch()  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._response: Any = None
        self.resource_version = resource_version

    def stop(self) -> None:
        """End the iteration soon, from any thread: shuts the stream's socket, or the stream as soon as it opens."""
        with self._lock:
            self._stopped.set()
            response = self._response
        if response is not None:
            _shutdown(response)

    def __iter__(self) -> Iterator[PodEvent]:
        timeouts = self._kube.timeouts
        with api_call("watch", "pods", self._node, quiet=self._stopped):
            response: Any = self._kube.core.list_pod_for_all_namespaces(
                watch=True,
                _preload_content=False,
                field_selector=f"spec.nodeName={self._node}",
                label_selector=self._label_selector,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout_seconds,
                _request_timeout=(timeouts.connect_s, self._timeout_seconds + timeouts.read_s),
            )
            with self._lock:
                self._response = response
                stopped = self._stopped.is_set()
            try:
                if stopped:
                    return
                if not 200 <= int(getattr(response, "status", 200)) <= 299:
                    raise ApiException(http_resp=response)
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    if not line.strip():
                        continue
                    event = self._event(line)
                    self.resource_version = event.resource_version or self.resource_version
                    yield event
                    if self._stopped.is_set():
                        return
            finally:
                with contextlib.suppress(Exception):
                    response.close()
                    response.release_conn()

    def _event(self, line: str) -> PodEvent:
        try:
            raw = json.loads(line)
            kind, obj = raw["type"], raw["object"]
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ApiRejected(f"watch pods: malformed event {line[:200]!r}", verb="watch", resource="pods") from None
        if kind == "ERROR":
            raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
        if kind == "BOOKMARK":
            return PodEvent("BOOKMARK", None, version)
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise ApiRejected(f"watch pods: unexpected event type {kind!r}", verb="watch", resource="pods")
        pod = self._decoder.unmarshal_event(line, client.V1Pod)["object"]  # type: ignore[no-untyped-call]
        return PodEvent(kind, pod, version)


def _shutdown(response: Any) -> None:
    """Unblock a thread reading the response: shut its socket down (closing alone does not wake a blocked recv)."""
    with contextlib.suppress(Exception):
        if hasattr(response, "shutdown"):  # urllib3 >= 2.3
            response.shutdown()
            return
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class PodSnapshot:
    """Every pod on the node now: replace what you knew (first list, and again after a 410)."""

    pods: tuple[client.V1Pod, ...]
    resource_version: str


class NodePodWatcher:
    """Yields a PodSnapshot, then PodEvents in order; relists on 410, resumes after errors with backoff."""

    def __init__(
        self,
        kube: KubeClient,
        node: str,
        *,
        label_selector: str | None = None,
        watch_timeout_s: int | None = None,
        backoff_s: tuple[float, float] = (0.2, 30.0),
    ) -> None:
        self._kube = kube
        self._node = node
        self._label_selector = label_selector
        self._watch_timeout_s = watch_timeout_s
        self._backoff = backoff_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: PodWatch | None = None
        self.resource_version: str | None = None

    def stop(self) -> None:
        """Make events() return soon, from any thread."""
        self._stop.set()
        with self._lock:
            if self._current is not None:
                self._current.stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def events(self) -> Iterator[PodSnapshot | PodEvent]:
        """Non-retryable errors (ApiForbidden, ApiRejected) propagate; ApiUnavailable is retried until stop()."""
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    listing = self._kube.list_node_pods(self._node, label_selector=self._label_selector)
                    self.resource_version = listing.resource_version
                    delay = self._backoff[0]
                    yield PodSnapshot(listing.pods, listing.resource_version)
                    continue
                current = self._kube.watch_node_pods(
                    self._node,
                    self.resource_version,
                    timeout_seconds=self._watch_timeout_s,
                    label_selector=self._label_selector,
                )
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._current = current
                for event in current:
                    self.resource_version = event.resource_version or self.resource_version
                    delay = self._backoff[0]
                    if event.type != "BOOKMARK":
                        yield event
                    if self._stop.is_set():
                        return
            except ApiGone as exc:
                log.info("pod watch on %s: %s; listing again", self._node, exc)
                self.resource_version = None
            except ApiUnavailable as exc:
                log.warning("pod watch on %s: %s; retrying in %.1fs", self._node, exc, delay)
                self._stop.wait(exc.retry_after_s or delay)
                delay = min(delay * 2, self._backoff[1])
            finally:
                with self._lock:
                    self._current = None
