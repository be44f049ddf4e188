"""The filter's picture of the cluster: nodes and their live pods, kept fresh in the background.

A stale picture can only be too pessimistic about pods that finished (their instances look held) or
too optimistic about binds by another extender replica; bind re-reads the node under its lock, so
staleness costs a retry, never a double booking. Binds through this process are added at once
(`assume`, like kube-scheduler's own cache), so the next filter already counts them.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from hami_mig.kube.annotations import BIND_PHASE, VGPU_NODE, BindPhase
from hami_mig.kube.errors import ApiError
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.api import SchedulerApi

log = logging.getLogger(__name__)


def pod_node(pod: o.Obj) -> str:
    """The node a pod is on, or is being bound to (reserved by a bind, Binding not yet created)."""
    bound = o.node_name(pod)
    if bound:
        return bound
    ann = o.annotations_of(pod)
    if ann.get(BIND_PHASE) == BindPhase.ALLOCATING:
        return str(ann.get(VGPU_NODE) or "")
    return ""


class Snapshot:
    """Nodes and live pods by node, never changed once built; `views` caches what was derived from them."""

    def __init__(self, nodes: Iterable[o.Obj], pods: Iterable[o.Obj], taken_at: float | None = None) -> None:
        self.nodes: dict[str, o.Obj] = {o.name(n): n for n in nodes}
        grouped: dict[str, list[o.Obj]] = {}
        for pod in pods:
            if not o.is_live(pod):
                continue
            node = pod_node(pod)
            if node:
                grouped.setdefault(node, []).append(pod)
        self.pods_by_node: dict[str, tuple[o.Obj, ...]] = {k: tuple(v) for k, v in grouped.items()}
        self.taken_at = time.monotonic() if taken_at is None else taken_at
        self.views: dict[str, object] = {}
        self.pod_keys: dict[str, tuple[object, ...]] = {}

    def pods_on(self, node: str) -> tuple[o.Obj, ...]:
        return self.pods_by_node.get(node, ())

    def with_pod(self, pod: o.Obj) -> Snapshot:
        """This picture with `pod` added or replaced (matched by uid), on the node it is bound to."""
        out = Snapshot((), (), self.taken_at)
        out.nodes = self.nodes
        out.pods_by_node = {k: tuple(p for p in v if o.uid(p) != o.uid(pod)) for k, v in self.pods_by_node.items()}
        node = pod_node(pod)
        if node and o.is_live(pod):
            out.pods_by_node[node] = (*out.pods_by_node.get(node, ()), pod)
        changed = {k for k, v in self.pods_by_node.items() if len(v) != len(out.pods_by_node.get(k, ()))}
        changed.add(node)
        out.views = {k: v for k, v in self.views.items() if k not in changed}
        out.pod_keys = {k: v for k, v in self.pod_keys.items() if k not in changed}
        return out


class ClusterSource(Protocol):
    def snapshot(self, *, fresh: bool = False) -> Snapshot: ...
    def assume(self, pod: o.Obj) -> None: ...


class StaticSource:
    """A fixed picture (benchmarks, tests); `set` replaces it."""

    def __init__(self, nodes: Iterable[o.Obj] = (), pods: Iterable[o.Obj] = ()) -> None:
        self._snapshot = Snapshot(nodes, pods)

    def set(self, nodes: Iterable[o.Obj], pods: Iterable[o.Obj]) -> None:
        self._snapshot = Snapshot(nodes, pods)

    def snapshot(self, *, fresh: bool = False) -> Snapshot:
        return self._snapshot

    def assume(self, pod: o.Obj) -> None:
        self._snapshot = self._snapshot.with_pod(pod)


class ApiSource:
    """Lists nodes and live pods (one call each). A picture older than `ttl_s` is still served while a
    background refresh runs; one older than `max_stale_s` (or none yet) is refreshed before answering."""

    def __init__(self, api: SchedulerApi, ttl_s: float = 1.0, *, max_stale_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 warm: Callable[[Snapshot], None] | None = None, freeze_gc: bool = False) -> None:
        self.api = api
        self.freeze_gc = freeze_gc
        self.ttl_s = ttl_s
        self.max_stale_s = max_stale_s if max_stale_s is not None else max(10 * ttl_s, 5.0)
        self.warm = warm
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._assumed: dict[str, tuple[float, o.Obj]] = {}
        self._background: threading.Thread | None = None

    def snapshot(self, *, fresh: bool = False) -> Snapshot:
        with self._lock:
            current = self._snapshot
            age = self._clock() - current.taken_at if current is not None else None
        if current is not None and age is not None and not fresh:
            if age >= self.ttl_s:
                self._refresh_in_background()
            if age < self.max_stale_s:
                return current
        return self._refresh()

    def assume(self, pod: o.Obj) -> None:
        with self._lock:
            self._assumed[o.uid(pod)] = (self._clock(), pod)
            if self._snapshot is not None:
                self._snapshot = self._snapshot.with_pod(pod)

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def _refresh(self) -> Snapshot:
        with self._refresh_lock:  # one listing at a time; a waiter takes the one just made
            with self._lock:
                current = self._snapshot
            started = self._clock()
            if current is not None and started - current.taken_at < min(self.ttl_s, 0.05):
                return current
            fresh = Snapshot(self.api.list_nodes(), self.api.list_live_pods(), started)
            with self._lock:
                for uid, (when, pod) in list(self._assumed.items()):
                    if when < started - 60:
                        del self._assumed[uid]  # long since in every listing
                    elif when >= started:
                        fresh = fresh.with_pod(pod)  # bound while the listing was on its way
                self._snapshot = fresh
        if self.warm is not None:
            self.warm(fresh)
        if self.freeze_gc:
            # Tens of thousands of pod dicts, acyclic and long-lived: keep them out of the cyclic GC's full
            # collections, which would otherwise stall a filter for 100+ ms (refcounting still frees them).
            gc.freeze()
        return fresh

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._background is not None and self._background.is_alive():
                return
            self._background = threading.Thread(target=self._background_refresh, name="hami-scheduler-cache",
                                                daemon=True)
            self._background.start()

    def _background_refresh(self) -> None:
        try:
            self._refresh()
        except ApiError as exc:
            log.warning("cluster cache refresh failed: %s; serving the previous picture", exc)


def assumed_bound(pod: o.Obj, annotations: dict[str, str | None], labels: dict[str, str | None] | None,
                  node: str) -> o.Obj:
    """The pod as the API has it after a bind wrote `annotations`/`labels` and the Binding set its node."""
    out = copy.deepcopy(dict(pod))
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), **{k: v for k, v in annotations.items() if v is not None}}
    if labels:
        meta["labels"] = {**(meta.get("labels") or {}), **{k: v for k, v in labels.items() if v is not None}}
    meta.pop("resourceVersion", None)  # unknown: the view cache keys it on its content
    out.setdefault("spec", {})["nodeName"] = node
    return out
