"""Bind: lock the node, re-plan on a fresh read, write HAMi's annotations on the pod, create the Binding.

On any failure the lock is released and the annotations written are removed again, so the pod is
rescheduled cleanly. On success the lock stays: the node agent releases it after Allocate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hami_mig.errors import HamiMigError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    BIND_TIME,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    VGPU_NODE,
    VGPU_TIME,
    BindPhase,
    encode_pod_devices,
    encode_unix_time,
)
from hami_mig.kube.errors import ApiConflict, ApiError
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.api import SchedulerApi, label_value_ok
from hami_mig.scheduler.fit import ContainerRequests, NoFitError, PodRequestError, bind_devices, pod_requests
from hami_mig.scheduler.lock import LockBusy, NodeLocker
from hami_mig.scheduler.nodeview import build_view
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.protocol import BindingArgs
from hami_mig.scheduler.snapshot import assumed_bound

log = logging.getLogger(__name__)

WRITTEN = (DEVICES_TO_ALLOCATE, DEVICES_ALLOCATED, VGPU_NODE, VGPU_TIME, BIND_TIME, BIND_PHASE)


class BindError(HamiMigError):
    """The pod was not bound; the message says why (kube-scheduler shows it and retries the pod)."""


class Binder:
    def __init__(self, api: SchedulerApi, planner: NodePlanner, locker: NodeLocker, *,
                 on_bound: Callable[[o.Obj], None] | None = None, events: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.planner = planner
        self.locker = locker
        self.on_bound = on_bound
        self.events = events
        self._clock = clock
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _node_mutex(self, node: str) -> threading.Lock:
        with self._guard:
            return self._local.setdefault(node, threading.Lock())

    def bind(self, args: BindingArgs) -> str:
        """Bind the pod; returns the devices string written. Raises BindError."""
        ns, name, node = args.pod_namespace, args.pod_name, args.node
        where = f"bind {ns}/{name} to {node}"
        try:
            pod = self.api.get_pod(ns, name)
        except ApiError as exc:
            raise BindError(f"{where}: {exc}") from None
        if args.pod_uid and o.uid(pod) != args.pod_uid:
            raise BindError(f"{where}: the pod was replaced (uid {o.uid(pod)}, scheduled {args.pod_uid})")
        if o.node_name(pod):
            raise BindError(f"{where}: the pod is already bound to {o.node_name(pod)}")
        try:
            requests = pod_requests(pod, self.planner.config.names)
        except PodRequestError as exc:
            raise BindError(f"{where}: {exc}") from None
        if not requests:  # no GPU: nothing to lock or record, nothing will ever release a lock
            try:
                self.api.create_binding(ns, name, o.uid(pod), node)
            except ApiError as exc:
                raise BindError(f"{where}: {exc}") from None
            return ""
        with self._node_mutex(node):  # one bind per node per process; the API lock orders the rest
            try:
                taken = self.locker.acquire(node, ns, name)
            except (LockBusy, ApiError) as exc:
                raise BindError(f"{where}: {exc}") from None
            try:
                bound = self._bind_locked(pod, requests, args, where)
            except BaseException:
                self._release(node, ns, name)
                raise
        if taken.took_over and self.events:
            self._event(pod, "NodeLockTakenOver", f"hami-scheduler on {node}: {taken.took_over}")
        if self.on_bound is not None:
            self.on_bound(bound)
        return str(o.annotations_of(bound)[DEVICES_TO_ALLOCATE])

    def _bind_locked(self, pod: o.Obj, requests: ContainerRequests, args: BindingArgs, where: str) -> o.Obj:
        """Plan, write, bind; returns the pod as it now is in the API (for the filter's cache)."""
        ns, name, node = args.pod_namespace, args.pod_name, args.node
        try:
            node_obj = self.api.get_node(node)
            pods = [p for p in self.api.node_pods(node) if o.uid(p) != o.uid(pod)]
        except ApiError as exc:
            raise BindError(f"{where}: {exc}") from None
        view = build_view(node_obj, pods, self.planner, self.planner.config.names)
        try:
            devices = encode_pod_devices(bind_devices(pod, view, requests, self.planner))
        except NoFitError as exc:
            raise BindError(f"{where}: no longer fits: {exc}") from None
        now = encode_unix_time(self._clock())
        annotations: dict[str, str | None] = {
            DEVICES_TO_ALLOCATE: devices, DEVICES_ALLOCATED: devices, VGPU_NODE: node,
            VGPU_TIME: now, BIND_TIME: now, BIND_PHASE: BindPhase.ALLOCATING.value,
        }
        labels: dict[str, str | None] | None = {VGPU_NODE: node} if label_value_ok(node) else None
        self._patch(pod, annotations, labels, where)
        try:
            self.api.create_binding(ns, name, o.uid(pod), node)
        except ApiError as exc:
            self._unpatch(ns, name, labels is not None)
            raise BindError(f"{where}: {exc}") from None
        log.info("bound %s/%s to %s: %s", ns, name, node, devices)
        return assumed_bound(pod, annotations, labels, node)

    def _patch(self, pod: o.Obj, annotations: dict[str, str | None], labels: dict[str, str | None] | None,
               where: str) -> None:
        ns, name = o.namespace(pod), o.name(pod)
        version = o.resource_version(pod)
        for _ in range(3):
            try:
                self.api.patch_pod_metadata(ns, name, annotations=annotations, labels=labels,
                                            resource_version=version)
                return
            except ApiConflict:
                try:
                    fresh = self.api.get_pod(ns, name)
                except ApiError as exc:
                    raise BindError(f"{where}: {exc}") from None
                if o.uid(fresh) != o.uid(pod) or o.node_name(fresh):
                    raise BindError(f"{where}: the pod changed while binding (replaced or bound)") from None
                version = o.resource_version(fresh)
            except ApiError as exc:
                raise BindError(f"{where}: cannot write the allocation on the pod: {exc}") from None
        raise BindError(f"{where}: the pod kept changing while its allocation was written")

    def _unpatch(self, ns: str, name: str, labelled: bool) -> None:
        try:
            self.api.patch_pod_metadata(ns, name, annotations=dict.fromkeys(WRITTEN),
                                        labels={VGPU_NODE: None} if labelled else None)
        except ApiError as exc:
            log.warning("could not remove the annotations of unbound pod %s/%s: %s", ns, name, exc)

    def _release(self, node: str, ns: str, name: str) -> None:
        try:
            self.locker.release(node, ns, name)
        except ApiError as exc:
            log.warning("could not release the lock of %s for %s/%s: %s; it expires on its own", node, ns, name, exc)

    def _event(self, pod: o.Obj, reason: str, message: str) -> None:
        try:
            self.api.event(o.namespace(pod), o.name(pod), o.uid(pod), reason, message, warning=True)
        except ApiError as exc:
            log.debug("event %s on %s not posted: %s", reason, o.key(pod), exc)
