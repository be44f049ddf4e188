"""The node agent's side of HAMi's bind handshake: release `hami.io/mutex.lock`, mark a failed bind.

As HAMi's device plugin does (`podAllocationTrySuccess` / `PodAllocationSuccess` in plugin/util.go, v2.9.0),
the lock is kept until the pod's LAST container with devices is allocated: HAMi's scheduler binds the next pod
to the node only once it is gone, so it never plans around a half-allocated pod.
"""

from __future__ import annotations

import logging
from typing import Any

from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_TO_ALLOCATE,
    NODE_LOCK,
    decode_pod_devices,
    erase_next_container,
    next_pending_container,
)
from hami_mig.kube.client import KubeClient
from hami_mig.kube.errors import ApiConflict, ApiError
from hami_mig.kube.nodelock import NodeLock

log = logging.getLogger(__name__)


def pod_allocation_done(pod: Any) -> bool:
    """Whether the Allocate just served was the pod's last: nothing left in `vgpu-devices-to-allocate` once
    its next container is erased (HAMi: the refreshed annotation no longer names an NVIDIA device)."""
    annotations = (pod.metadata.annotations or {}) if pod.metadata is not None else {}
    try:
        left = decode_pod_devices(erase_next_container(annotations.get(DEVICES_TO_ALLOCATE, "")))
    except InputError:
        return True  # unreadable: nothing more will be allocated from it, so nothing to wait for
    return next_pending_container(left) is None


def release_node_lock(kube: KubeClient, node: str, pod: Any) -> None:
    """Drop the node lock if this pod holds it (HAMi's scheduler binds the next pod only after that)."""
    ns, name = pod.metadata.namespace, pod.metadata.name
    for _attempt in range(3):  # compare-and-swap: never drop a lock another binder took over meanwhile
        try:
            meta = kube.get_node(node).metadata
            current = ((meta.annotations if meta is not None else None) or {}).get(NODE_LOCK)
            if not current:
                return
            try:
                lock = NodeLock.decode(current)
            except InputError:
                log.warning("node %s: unreadable %s %r left as it is", node, NODE_LOCK, current)
                return
            if not (lock.held_by(ns, name) or (not lock.namespace and not lock.pod)):
                return
            kube.patch_node_metadata(node, annotations={NODE_LOCK: None},
                                     resource_version=meta.resource_version if meta is not None else None)
            return
        except ApiConflict:
            continue  # the node changed under us: read it again
        except ApiError as exc:
            log.warning("could not release %s on node %s for %s/%s: %s; it expires by itself", NODE_LOCK, node,
                        ns, name, exc)
            return


def mark_bind_failed(kube: KubeClient, pod: Any, reason: str) -> None:
    """`hami.io/bind-phase: failed` so a HAMi scheduler sees the bind failed (the reason is in the Event)."""
    meta = pod.metadata
    try:
        kube.patch_pod_annotations(meta.namespace, meta.name, {BIND_PHASE: "failed"})
    except ApiError as exc:
        log.warning("could not mark %s/%s bind-phase failed (%s): %s", meta.namespace, meta.name, reason, exc)
