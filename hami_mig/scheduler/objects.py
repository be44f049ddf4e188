"""Read-only accessors for pods and nodes in their JSON (dict) form, as kube-scheduler and raw API reads give them.

The extender never builds kubernetes model objects for the cluster's pods: deserializing thousands
of them costs more than the whole filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]
TERMINAL_PHASES = ("Succeeded", "Failed")


_EMPTY: Mapping[str, Any] = {}


def _map(obj: Any, key: str) -> Mapping[str, Any]:
    # dict first: isinstance against the Mapping ABC is slow, and this runs for every pod of the cluster.
    if type(obj) is not dict and not isinstance(obj, Mapping):
        return _EMPTY
    value = obj.get(key)
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return _EMPTY


def metadata(obj: Obj) -> Mapping[str, Any]:
    return _map(obj, "metadata")


def spec(obj: Obj) -> Mapping[str, Any]:
    return _map(obj, "spec")


def name(obj: Obj) -> str:
    return str(metadata(obj).get("name") or "")


def namespace(obj: Obj) -> str:
    return str(metadata(obj).get("namespace") or "")


def uid(obj: Obj) -> str:
    return str(metadata(obj).get("uid") or "")


def resource_version(obj: Obj) -> str:
    return str(metadata(obj).get("resourceVersion") or "")


def key(obj: Obj) -> str:
    return f"{namespace(obj)}/{name(obj)}"


def annotations_of(obj: Obj) -> Mapping[str, str]:
    return _map(metadata(obj), "annotations")


def labels_of(obj: Obj) -> Mapping[str, str]:
    return _map(metadata(obj), "labels")


def node_name(pod: Obj) -> str:
    return str(spec(pod).get("nodeName") or "")


def phase(pod: Obj) -> str:
    return str(_map(pod, "status").get("phase") or "")


def deleting(obj: Obj) -> bool:
    return bool(metadata(obj).get("deletionTimestamp"))


def created(obj: Obj) -> str:
    """RFC3339 creation time: sorts in time order as a string."""
    return str(metadata(obj).get("creationTimestamp") or "")


def is_live(pod: Obj) -> bool:
    """Not Succeeded/Failed: its containers may run and hold GPU instances (a terminating pod still does)."""
    return phase(pod) not in TERMINAL_PHASES
