"""kube-scheduler extender v1 (k8s.io/kube-scheduler/extender/v1) documents, decoded strictly enough to
answer 400 with the reason instead of failing later. Go's JSON decoder matches field names without
regard to case, so these decoders do too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hami_mig.errors import HamiMigError
from hami_mig.scheduler.objects import Obj


class ProtocolError(HamiMigError):
    """A request body that is not the document the endpoint takes (HTTP 400)."""


def field(doc: Mapping[str, Any], name: str) -> Any:
    if name in doc:
        return doc[name]
    lowered = name.lower()
    return next((v for k, v in doc.items() if isinstance(k, str) and k.lower() == lowered), None)


def _object(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ProtocolError(f"{what}: a JSON object is required, got {type(doc).__name__}")
    return doc


@dataclass(frozen=True)
class ExtenderArgs:
    """`nodes` (full Node objects) when kube-scheduler's nodeCacheCapable is false, else `node_names`."""

    pod: Obj
    nodes: tuple[Obj, ...] | None
    node_names: tuple[str, ...] | None

    @property
    def names(self) -> tuple[str, ...]:
        if self.nodes is not None:
            return tuple(str((n.get("metadata") or {}).get("name") or "") for n in self.nodes)
        return self.node_names or ()


def parse_extender_args(doc: Any) -> ExtenderArgs:
    doc = _object(doc, "ExtenderArgs")
    pod = field(doc, "pod")
    if not isinstance(pod, Mapping) or not isinstance(pod.get("metadata"), Mapping):
        raise ProtocolError("ExtenderArgs.pod: a Pod object with metadata is required")
    nodes_doc = field(doc, "nodes")
    names_doc = field(doc, "nodenames")
    nodes: tuple[Obj, ...] | None = None
    names: tuple[str, ...] | None = None
    if nodes_doc is not None:
        items = field(_object(nodes_doc, "ExtenderArgs.nodes"), "items")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(
            isinstance(n, Mapping) and isinstance(n.get("metadata"), Mapping) and n["metadata"].get("name")
            for n in items
        ):
            raise ProtocolError("ExtenderArgs.nodes.items: a list of Node objects with metadata.name is required")
        nodes = tuple(items)
    if names_doc is not None:
        if not isinstance(names_doc, list) or not all(isinstance(n, str) and n for n in names_doc):
            raise ProtocolError("ExtenderArgs.nodenames: a list of node names is required")
        names = tuple(names_doc)
    if nodes is None and names is None:
        raise ProtocolError("ExtenderArgs: either nodes (nodeCacheCapable: false) or nodenames "
                            "(nodeCacheCapable: true) is required")
    return ExtenderArgs(pod, nodes, names)


def filter_result(args: ExtenderArgs, passed: Iterable[str], failed: Mapping[str, str],
                  unresolvable: Mapping[str, str], error: str = "") -> dict[str, Any]:
    """ExtenderFilterResult in the form the request used; every failed node is in failedNodes, and the
    ones no preemption can help are in failedAndUnresolvableNodes too (kube-scheduler prefers that map)."""
    keep = set(passed)
    out: dict[str, Any] = {}
    if args.nodes is not None:
        out["nodes"] = {"items": [n for n in args.nodes if (n.get("metadata") or {}).get("name") in keep]}
    else:
        out["nodenames"] = [n for n in args.names if n in keep]
    out["failedNodes"] = dict(failed)
    if unresolvable:
        out["failedAndUnresolvableNodes"] = dict(unresolvable)
    out["error"] = error
    return out


@dataclass(frozen=True)
class BindingArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def parse_binding_args(doc: Any) -> BindingArgs:
    doc = _object(doc, "ExtenderBindingArgs")
    values: dict[str, str] = {}
    for key in ("podName", "podNamespace", "podUID", "node"):
        value = field(doc, key)
        if value is None and key == "podUID":
            value = ""
        if not isinstance(value, str) or (key != "podUID" and not value):
            raise ProtocolError(f"ExtenderBindingArgs.{key}: a non-empty string is required")
        values[key] = value
    return BindingArgs(values["podName"], values["podNamespace"], values["podUID"], values["node"])
