"""NodeViews, built once per distinct (published GPUs, pods on the node) and reused across filters."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.annotations import BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, NODE_REGISTER
from hami_mig.kube.resources import ResourceNames
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.nodeview import NodeView, build_view, hami_mig_node
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.snapshot import Snapshot

PodKey = tuple[str, ...]


def pod_key(pod: o.Obj) -> PodKey:
    """What identifies a pod's state: uid + resourceVersion from the API, else what the view reads."""
    rv = o.resource_version(pod)
    if rv:
        return (o.uid(pod), rv)
    ann = o.annotations_of(pod)
    return (o.key(pod), o.uid(pod), o.phase(pod), o.node_name(pod), str(o.deleting(pod)), o.created(pod),
            ann.get(BIND_PHASE, "\0"), ann.get(DEVICES_TO_ALLOCATE, ""), ann.get(DEVICES_ALLOCATED, ""),
            ann.get(INSTANCES_ANNOTATION, ""), repr(o.spec(pod)) if ann.get(BIND_PHASE) is None else "")


class ViewCache:
    def __init__(self, planner: NodePlanner, names: ResourceNames, limit: int = 20_000) -> None:
        self.planner = planner
        self.names = names
        self.limit = limit
        self._views: dict[tuple[object, ...], NodeView] = {}
        self._lock = threading.Lock()

    def view(self, node: o.Obj, pods: Sequence[o.Obj], pods_key: tuple[object, ...] | None = None) -> NodeView:
        keys = pods_key if pods_key is not None else tuple(pod_key(p) for p in pods)
        cache_key = (o.name(node), o.annotations_of(node).get(NODE_REGISTER, ""), hami_mig_node(node), keys)
        hit = self._views.get(cache_key)
        if hit is not None:
            return hit
        built = build_view(node, pods, self.planner, self.names)
        with self._lock:
            if len(self._views) >= self.limit:
                self._views.clear()
            self._views[cache_key] = built
        return built

    def in_snapshot(self, snapshot: Snapshot, name: str, node: o.Obj | None = None) -> NodeView | None:
        """The view of a node of the snapshot, or of `node` as kube-scheduler sent it (the snapshot's view when
        it publishes the same GPUs)."""
        known = snapshot.nodes.get(name)
        if node is not None and known is not None and (
                o.annotations_of(node).get(NODE_REGISTER) != o.annotations_of(known).get(NODE_REGISTER)
                or hami_mig_node(node) != hami_mig_node(known)):
            known = None
        if known is None:
            if node is None:
                return None
            return self.view(node, snapshot.pods_on(name), self._pods_key(snapshot, name))
        cached = snapshot.views.get(name)
        if isinstance(cached, NodeView):
            return cached
        built = self.view(known, snapshot.pods_on(name), self._pods_key(snapshot, name))
        snapshot.views[name] = built
        return built

    def _pods_key(self, snapshot: Snapshot, name: str) -> tuple[object, ...]:
        keys = snapshot.pod_keys.get(name)
        if keys is None:
            keys = tuple(pod_key(p) for p in snapshot.pods_on(name))
            snapshot.pod_keys[name] = keys
        return keys

    def warm(self, snapshot: Snapshot) -> None:
        """Build every node's view now (the cache's background thread calls it after a refresh)."""
        for name in snapshot.nodes:
            self.in_snapshot(snapshot, name)
