"""Events about the Node itself (MIG mode changes, stepping back from the GPU Operator).

A Node is cluster-scoped: its Events live in the `default` namespace with an empty
`involvedObject.namespace` and the node name as `involvedObject.uid`, as the kubelet posts them,
which is what `kubectl describe node` selects on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kubernetes import client

from hami_mig.kube.client import EventType, KubeClient
from hami_mig.kube.errors import api_call

NODE_EVENT_NAMESPACE = "default"
_MAX_MESSAGE = 1024


def create_node_event(kube: KubeClient, node: str, reason: str, message: str, *,
                      type: EventType = "Normal") -> client.CoreV1Event:
    now = datetime.now(UTC).replace(microsecond=0)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"{node}.{time.time_ns():x}", namespace=NODE_EVENT_NAMESPACE),
        involved_object=client.V1ObjectReference(api_version="v1", kind="Node", name=node, uid=node),
        reason=reason,
        message=message,
        type=type,
        source=client.V1EventSource(component=kube.component, host=node),
        reporting_component=kube.component,
        reporting_instance=node,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    with api_call("create", "events", NODE_EVENT_NAMESPACE):
        return kube.core.create_namespaced_event(NODE_EVENT_NAMESPACE, body,
                                                 _request_timeout=(kube.timeouts.connect_s, kube.timeouts.read_s))
