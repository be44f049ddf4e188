"""The one adapter to the API server: a few CoreV1 calls, bounded by timeouts, failures mapped to our errors."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from hami_mig.errors import HamiMigError
from hami_mig.kube.corev1 import CoreV1
from hami_mig.kube.errors import api_call
from hami_mig.kube.podwatch import PodWatch

RBAC_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("patch", "pods", ""),
    ("get", "nodes", ""),
    ("patch", "nodes", ""),
    ("patch", "nodes", "status"),
    ("create", "events", ""),
)
"""Every (verb, resource, subresource) of the core ("") API group this adapter uses; the chart must grant them."""

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PatchStrategy = Literal["merge", "strategic"]
EventType = Literal["Normal", "Warning"]
_MAX_EVENT_MESSAGE = 1024


class KubeConfigError(HamiMigError):
    """No usable kubeconfig or in-cluster service account."""


@dataclass(frozen=True)
class Timeouts:
    """Per-request bounds, so a slow API server never holds a kubelet Allocate for long."""

    connect_s: float = 2.0
    read_s: float = 5.0
    watch_s: int = 300
    """Server-side timeoutSeconds of one watch request; the client reads for watch_s + read_s at most."""


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about, when the caller has no V1Pod at hand."""

    namespace: str
    name: str
    uid: str = ""
    kind: str = "Pod"


@dataclass(frozen=True)
class PodList:
    pods: tuple[client.V1Pod, ...]
    resource_version: str
    """Watch from here to see every change after this list."""


def default_retries() -> urllib3.Retry:
    """Retry only a refused connect, once (the request was never sent); everything else is the caller's call."""
    return urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0, raise_on_status=False)


class KubeClient:
    """Thin typed wrapper over CoreV1Api for the node agent."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeouts: Timeouts | None = None,
        component: str = "hami-mig",
        node_name: str = "",
    ) -> None:
        self.api_client = api_client
        self.core = CoreV1(api_client)  # the calls below, without importing the whole generated CoreV1Api
        self.timeouts = timeouts or Timeouts()
        self.component = component
        self.node_name = node_name

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None, **kwargs: Any) -> KubeClient:
        """From a kubeconfig file (None: $KUBECONFIG or ~/.kube/config)."""
        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise KubeConfigError(f"kubeconfig {path or '(default)'}: {exc}") from None
        configuration.retries = default_retries()
        return cls(client.ApiClient(configuration), **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> KubeClient:
        """From the pod's service account (token, CA, KUBERNETES_SERVICE_HOST)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise KubeConfigError(f"in-cluster config: {exc}") from None
        configuration.retries = default_retries()
        return cls(client.ApiClient(configuration), **kwargs)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, **kwargs: Any) -> KubeClient:
        """An explicit kubeconfig wins; inside a pod the service account; else the default kubeconfig."""
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(**kwargs)
        return cls.from_kubeconfig(kubeconfig, **kwargs)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.timeouts.connect_s, self.timeouts.read_s)

    # --- pods -----------------------------------------------------------------------------------
    def list_node_pods(self, node: str, *, label_selector: str | None = None, live_only: bool = False) -> PodList:
        """Pods bound to `node` in every namespace, with the list's resourceVersion; `live_only`: not those that
        ended (Succeeded/Failed), which hold nothing."""
        fields = f"spec.nodeName={node}" + (",status.phase!=Succeeded,status.phase!=Failed" if live_only else "")
        with api_call("list", "pods"):
            result = self.core.list_pod_for_all_namespaces(
                field_selector=fields, label_selector=label_selector, _request_timeout=self._timeout
            )
        version = result.metadata.resource_version if result.metadata is not None else None
        return PodList(tuple(result.items or ()), str(version or ""))

    def get_pod(self, namespace: str, name: str) -> client.V1Pod:
        with api_call("get", "pods", f"{namespace}/{name}"):
            return self.core.read_namespaced_pod(name, namespace, _request_timeout=self._timeout)

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        *,
        annotations: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
        resource_version: str | None = None,
        strategy: PatchStrategy = "merge",
    ) -> client.V1Pod:
        """Set (value) or remove (None) annotations and labels; a stale resource_version raises ApiConflict."""
        body = _metadata_patch(annotations, labels, resource_version)
        with api_call("patch", "pods", f"{namespace}/{name}"):
            return self.core.patch_namespaced_pod(
                name, namespace, body, _content_type=_content_type(strategy), _request_timeout=self._timeout
            )

    def patch_pod_annotations(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        resource_version: str | None = None,
        strategy: PatchStrategy = "merge",
    ) -> client.V1Pod:
        return self.patch_pod_metadata(
            namespace, name, annotations=annotations, resource_version=resource_version, strategy=strategy
        )

    def watch_node_pods(
        self, node: str, resource_version: str, *, timeout_seconds: int | None = None, label_selector: str | None = None
    ) -> PodWatch:
        """One watch request from `resource_version`; iterate it for PodEvents, stop() it from another thread."""
        return PodWatch(self, node, resource_version, timeout_seconds or self.timeouts.watch_s, label_selector)

    # --- nodes ----------------------------------------------------------------------------------
    def get_node(self, name: str) -> client.V1Node:
        with api_call("get", "nodes", name):
            return self.core.read_node(name, _request_timeout=self._timeout)

    def patch_node_metadata(
        self,
        name: str,
        *,
        annotations: Mapping[str, str | None] | None = None,
        labels: Mapping[str, str | None] | None = None,
        resource_version: str | None = None,
        strategy: PatchStrategy = "merge",
    ) -> client.V1Node:
        body = _metadata_patch(annotations, labels, resource_version)
        with api_call("patch", "nodes", name):
            return self.core.patch_node(
                name, body, _content_type=_content_type(strategy), _request_timeout=self._timeout
            )

    def patch_node_resources(
        self,
        name: str,
        capacity: Mapping[str, str | None],
        allocatable: Mapping[str, str | None] | None = None,
    ) -> client.V1Node:
        """Set (quantity string) or drop (None) extended resources in status.capacity/allocatable (default: same)."""
        status = {"capacity": dict(capacity), "allocatable": dict(capacity if allocatable is None else allocatable)}
        with api_call("patch", "nodes", name, subresource="status"):
            return self.core.patch_node_status(
                name, {"status": status}, _content_type=MERGE_PATCH, _request_timeout=self._timeout
            )

    # --- events ---------------------------------------------------------------------------------
    def create_event(
        self, about: client.V1Pod | ObjectRef, reason: str, message: str, *, type: EventType = "Normal"
    ) -> client.CoreV1Event:
        """A core/v1 Event on a pod (what `kubectl describe pod` shows), from component hami-mig on this node."""
        ref = _object_ref(about)
        now = datetime.now(UTC).replace(microsecond=0)  # metav1.Time has whole seconds
        if len(message) > _MAX_EVENT_MESSAGE:
            message = message[: _MAX_EVENT_MESSAGE - 3] + "..."
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{ref.name}.{time.time_ns():x}", namespace=ref.namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind=ref.kind, namespace=ref.namespace, name=ref.name, uid=ref.uid or None
            ),
            reason=reason,
            message=message,
            type=type,
            source=client.V1EventSource(component=self.component, host=self.node_name or None),
            reporting_component=self.component,
            reporting_instance=self.node_name or self.component,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        with api_call("create", "events", ref.namespace):
            return self.core.create_namespaced_event(ref.namespace, body, _request_timeout=self._timeout)


# --- helpers ------------------------------------------------------------------------------------
def _content_type(strategy: PatchStrategy) -> str:
    return STRATEGIC_MERGE_PATCH if strategy == "strategic" else MERGE_PATCH


def _metadata_patch(
    annotations: Mapping[str, str | None] | None,
    labels: Mapping[str, str | None] | None,
    resource_version: str | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"metadata": metadata}


def _object_ref(about: client.V1Pod | ObjectRef) -> ObjectRef:
    if isinstance(about, ObjectRef):
        return about
    meta = about.metadata
    if meta is None or not meta.namespace or not meta.name:
        raise ValueError("an Event needs a pod with metadata.namespace and metadata.name")
    return ObjectRef(namespace=meta.namespace, name=meta.name, uid=meta.uid or "")
