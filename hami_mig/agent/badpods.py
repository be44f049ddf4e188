"""HAMi pods whose devices annotation cannot be read: each is failed once, visibly, and then out of the way.

Such a pod can never be served. It gets `hami.io/bind-phase: failed` (HAMi's scheduler then sees the bind
failed) and a Warning Event naming the annotation and its value, and every later Allocate skips it. The
Allocate that is its own admission fails with the same line: like HAMi's `GetPendingPod` (pkg/util/util.go,
v2.9.0, via `GetAllocatePodByNode`), the pod named by the node's `hami.io/mutex.lock` is the one the kubelet
is admitting, so a broken pod holding the lock takes this Allocate (and the lock is released); one that does
not is only marked and skipped, and the call serves the next waiting pod.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hami_mig.agent.events import EventPoster
from hami_mig.agent.hami_lock import mark_bind_failed, release_node_lock
from hami_mig.agent.pods import BrokenPod, broken_hami_pods
from hami_mig.errors import InputError
from hami_mig.kube.annotations import NODE_LOCK
from hami_mig.kube.client import KubeClient
from hami_mig.kube.errors import ApiError
from hami_mig.kube.nodelock import NodeLock
from hami_mig.plugin import InvalidRequestError

log = logging.getLogger(__name__)


def node_lock(kube: KubeClient, node: str) -> NodeLock | None:
    """The node's HAMi lock, or None when there is none, it cannot be read or the API server does not answer."""
    try:
        meta = kube.get_node(node).metadata
    except ApiError as exc:
        log.debug("node %s: cannot read %s: %s", node, NODE_LOCK, exc)
        return None
    value = ((meta.annotations if meta is not None else None) or {}).get(NODE_LOCK)
    if not value:
        return None
    try:
        return NodeLock.decode(value)
    except InputError:
        return None


def _holds(lock: NodeLock | None, bad: BrokenPod) -> bool:
    meta = bad.pod.metadata
    return lock is not None and lock.held_by(meta.namespace, meta.name)


def fail_broken(pods: Sequence[Any], kube: KubeClient, node: str, events: EventPoster, *, admitting: bool) -> None:
    """Mark every broken HAMi pod failed, with an Event. `admitting` (an Allocate is running): a broken pod
    that holds the node lock is this call's pod, so InvalidRequestError is raised for it after the marking.
    Outside an Allocate (reconcile) a lock holder is left to its own Allocate until its lock goes stale."""
    broken = broken_hami_pods(pods)
    if not broken:
        return
    lock = node_lock(kube, node)
    current: BrokenPod | None = None
    for bad in broken:
        holder = _holds(lock, bad)
        if holder and not admitting and lock is not None and not lock.expired():
            continue
        why = "this Allocate fails" if holder and admitting else "it is skipped, the node's other pods are served"
        log.error("%s; set %s failed: %s", bad.message, "hami.io/bind-phase", why)
        events.failed_for(bad.pod, f"{bad.message}; hami.io/bind-phase set to failed: no MIG instance can be "
                                   "allocated for it")
        mark_bind_failed(kube, bad.pod, bad.message)
        if holder:
            release_node_lock(kube, node, bad.pod)
            current = current or bad
    if current is not None and admitting:
        raise InvalidRequestError(current.message)
