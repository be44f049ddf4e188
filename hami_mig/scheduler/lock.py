"""`hami.io/mutex.lock` from the scheduler's side: take it with a compare-and-swap, wait briefly, take over stale ones.

The lock says "pod P is being allocated on this node": bind sets it, the node agent releases it after
Allocate. A lock held by another pod is stale, and taken over, when it is older than the timeout (a
crashed agent or binder), or when its pod no longer needs it: gone, finished, allocated
(bind-phase success/failed) or bound elsewhere. A holder not yet annotated is mid-bind and respected.
Every write carries the node's resourceVersion, so two binders never both believe they hold it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hami_mig.errors import HamiMigError, InputError
from hami_mig.kube.annotations import BIND_PHASE, NODE_LOCK, VGPU_NODE, BindPhase
from hami_mig.kube.errors import ApiConflict, ApiNotFound
from hami_mig.kube.nodelock import LOCK_TIMEOUT, NodeLock
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.api import SchedulerApi

log = logging.getLogger(__name__)


class LockBusy(HamiMigError):
    """Another pod's allocation holds the node's lock and did not finish within the wait."""


@dataclass(frozen=True)
class Taken:
    lock: NodeLock
    took_over: str = ""
    """Why a previous holder's lock was overwritten ("" when the node was free)."""


class NodeLocker:
    def __init__(self, api: SchedulerApi, *, timeout: timedelta = LOCK_TIMEOUT, wait_s: float = 5.0,
                 now: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.timeout = timeout
        self.wait_s = wait_s
        self._now = now or (lambda: datetime.now(UTC))
        self._sleep = sleep

    def stale(self, lock: NodeLock, node: str) -> str:
        """Why the lock no longer protects anything ("" while it does)."""
        if lock.expired(self._now(), self.timeout):
            return f"lock of {lock.namespace or '?'}/{lock.pod or '?'} from {lock.encode().split(',')[0]} expired"
        if not lock.pod:
            return ""
        try:
            holder = self.api.get_pod(lock.namespace, lock.pod)
        except ApiNotFound:
            return f"lock holder {lock.namespace}/{lock.pod} no longer exists"
        ann = o.annotations_of(holder)
        if not o.is_live(holder):
            return f"lock holder {lock.namespace}/{lock.pod} finished ({o.phase(holder)})"
        if ann.get(BIND_PHASE) in (BindPhase.SUCCESS, BindPhase.FAILED):
            return f"lock holder {lock.namespace}/{lock.pod} is allocated (bind-phase {ann[BIND_PHASE]})"
        target = o.node_name(holder) or ann.get(VGPU_NODE, "")
        if target and target != node:  # no target yet: its binder is between locking and writing the pod
            return f"lock holder {lock.namespace}/{lock.pod} went to {target}, not {node}"
        return ""

    def acquire(self, node: str, namespace: str, pod: str) -> Taken:
        deadline = time.monotonic() + self.wait_s
        delay = 0.02
        while True:
            current = self.api.get_node(node)
            text = o.annotations_of(current).get(NODE_LOCK, "")
            took_over = ""
            if text:
                try:
                    held = NodeLock.decode(text)
                except InputError:
                    took_over = f"unreadable lock {text!r} replaced"
                else:
                    if not held.held_by(namespace, pod):
                        took_over = self.stale(held, node)
                        if not took_over:
                            if time.monotonic() >= deadline:
                                raise LockBusy(
                                    f"node {node} is locked by {held.namespace}/{held.pod} since "
                                    f"{held.encode().split(',')[0]} (one allocation at a time; waited "
                                    f"{self.wait_s:g}s; a lock older than {self.timeout} is taken over)")
                            self._sleep(delay)
                            delay = min(delay * 2, 0.5)
                            continue
            lock = NodeLock.now(namespace, pod, self._now())
            try:
                self.api.patch_node_annotations(node, {NODE_LOCK: lock.encode()}, o.resource_version(current))
            except ApiConflict:
                if time.monotonic() >= deadline + self.wait_s:
                    raise LockBusy(f"node {node} changed on every attempt to lock it for "
                                   f"{2 * self.wait_s:g}s") from None
                continue  # the node changed since we read it: look again
            if took_over:
                log.warning("node %s: %s; lock taken by %s/%s", node, took_over, namespace, pod)
            return Taken(lock, took_over)

    def release(self, node: str, namespace: str, pod: str) -> bool:
        """Remove the lock if this pod still holds it; False when someone else holds it now."""
        for _ in range(10):
            current = self.api.get_node(node)
            text = o.annotations_of(current).get(NODE_LOCK, "")
            try:
                if not text or not NodeLock.decode(text).held_by(namespace, pod):
                    return False
            except InputError:
                return False
            try:
                self.api.patch_node_annotations(node, {NODE_LOCK: None}, o.resource_version(current))
            except ApiConflict:
                continue
            return True
        return False
