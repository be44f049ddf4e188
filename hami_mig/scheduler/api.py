"""The extender's API calls: raw JSON reads (no model deserialization), metadata patches, the Binding."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from hami_mig.kube.annotations import VGPU_NODE
from hami_mig.kube.client import KubeClient, ObjectRef
from hami_mig.kube.errors import ApiRejected, api_call
from hami_mig.scheduler.objects import Obj

SCHEDULER_RBAC_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("patch", "pods", ""),
    ("create", "pods", "binding"),
    ("get", "nodes", ""),
    ("list", "nodes", ""),
    ("patch", "nodes", ""),
    ("create", "events", ""),
)
"""Every (verb, resource, subresource) of the core API group the extender uses; the chart grants exactly these
(`watch` is kube-scheduler's own need, kept here so one ClusterRole serves the pod)."""

LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value_ok(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _body(response: Any) -> Any:
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


class SchedulerApi:
    """What bind and the cluster cache need from the API server, over the shared KubeClient."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.core = kube.core

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.kube.timeouts.connect_s, self.kube.timeouts.read_s)

    # --- reads, as dicts ------------------------------------------------------------------------
    def get_pod(self, namespace: str, name: str) -> Obj:
        with api_call("get", "pods", f"{namespace}/{name}"):
            pod: Obj = _body(self.core.read_namespaced_pod(name, namespace, _preload_content=False,
                                                           _request_timeout=self._timeout))
        return pod

    def get_node(self, name: str) -> Obj:
        with api_call("get", "nodes", name):
            node: Obj = _body(self.core.read_node(name, _preload_content=False, _request_timeout=self._timeout))
        return node

    def list_nodes(self) -> list[Obj]:
        with api_call("list", "nodes"):
            doc = _body(self.core.list_node(_preload_content=False, _request_timeout=self._timeout))
        return list(doc.get("items") or [])

    def list_live_pods(self, *, field_selector: str = "", label_selector: str | None = None) -> list[Obj]:
        """Pods in every namespace that are not Succeeded/Failed."""
        selector = LIVE_PODS + ("," + field_selector if field_selector else "")
        with api_call("list", "pods"):
            doc = _body(self.core.list_pod_for_all_namespaces(
                field_selector=selector, label_selector=label_selector, _preload_content=False,
                _request_timeout=self._timeout))
        return list(doc.get("items") or [])

    def node_pods(self, node: str) -> list[Obj]:
        """Live pods bound to the node, and those a bind reserved it for but not yet bound (labelled)."""
        pods = {p["metadata"]["uid"]: p for p in self.list_live_pods(field_selector=f"spec.nodeName={node}")}
        if label_value_ok(node):
            for p in self.list_live_pods(label_selector=f"{VGPU_NODE}={node}"):
                pods.setdefault(p["metadata"]["uid"], p)
        return list(pods.values())

    # --- writes ---------------------------------------------------------------------------------
    def patch_pod_metadata(self, namespace: str, name: str, *, annotations: Mapping[str, str | None],
                           labels: Mapping[str, str | None] | None = None, resource_version: str = "") -> None:
        self.kube.patch_pod_metadata(namespace, name, annotations=annotations, labels=labels,
                                     resource_version=resource_version or None)

    def patch_node_annotations(self, name: str, annotations: Mapping[str, str | None], resource_version: str) -> None:
        """A stale resource_version raises ApiConflict: the compare-and-swap the node lock rests on."""
        self.kube.patch_node_metadata(name, annotations=annotations, resource_version=resource_version)

    def create_binding(self, namespace: str, name: str, uid: str, node: str) -> None:
        """POST pods/<name>/binding, the subresource kube-scheduler itself uses (RBAC: create pods/binding).

        Not create_namespaced_binding: that posts to the separate `bindings` collection (RBAC: create
        bindings). The answer is a Status, which the client's V1Binding model cannot hold: read it raw.
        """
        meta: dict[str, str] = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        body: Any = {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        with api_call("create", "pods", f"{namespace}/{name}", subresource="binding"):
            status = _body(self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False,
                                                                   _request_timeout=self._timeout))
        if isinstance(status, dict) and status.get("status") == "Failure":
            raise ApiRejected(f"create pods/binding {namespace}/{name}: {status.get('message')}",
                              verb="create", resource="pods/binding", status=int(status.get("code") or 0))

    def event(self, namespace: str, name: str, uid: str, reason: str, message: str, *, warning: bool = False) -> None:
        self.kube.create_event(ObjectRef(namespace, name, uid), reason, message,
                               type="Warning" if warning else "Normal")
