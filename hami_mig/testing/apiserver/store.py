"""The fake API server's state: objects, one monotonic resourceVersion, and the change history watches replay."""

from __future__ import annotations

import bisect
import copy
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hami_mig.testing.apiserver.errors import StatusError, conflict, invalid, not_found

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (resource, namespace or "", name)

RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "nodes": ("Node", False),
    "events": ("Event", True),
    "configmaps": ("ConfigMap", True),
}
"""plural -> (kind, namespaced)"""

_HAS_STATUS = {"pods", "nodes"}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ANNOTATIONS_MAX = 256 * 1024


@dataclass(frozen=True)
class Change:
    rv: int
    resource: str
    namespace: str
    type: str  # ADDED / MODIFIED / DELETED
    old: Obj | None
    new: Obj


def now_rfc3339(offset_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """All state behind one condition variable; every write bumps the resourceVersion and wakes the watches."""

    def __init__(self, history_limit: int = 10_000, first_rv: int = 1000) -> None:
        self.cond = threading.Condition()
        self.objects: dict[Key, Obj] = {}
        self.rv = first_rv
        self.history: list[Change] = []
        self._history_rvs: list[int] = []
        self.history_limit = history_limit
        self.oldest_rv = first_rv
        """A watch may start from any resourceVersion >= this; older ones get 410 Gone."""
        self.generation = 0
        self.stream_epoch = 0
        self.closed = False
        self.graceful_pod_deletion = False

    # --- reads ----------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> Obj:
        with self.cond:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def select(self, resource: str, namespace: str | None, predicate: Callable[[Obj], bool]) -> tuple[list[Obj], int]:
        with self.cond:
            items = [
                copy.deepcopy(obj)
                for (res, ns, _), obj in sorted(self.objects.items(), key=lambda item: item[0])
                if res == resource and (namespace is None or ns == namespace) and predicate(obj)
            ]
            return items, self.rv

    def changes_after(self, rv: int) -> list[Change]:
        """Every change newer than rv (caller holds cond); StatusError 410 when rv was compacted away."""
        if rv < self.oldest_rv:
            raise StatusError(410, f"too old resource version: {rv} ({self.oldest_rv})", reason="Expired")
        return self.history[bisect.bisect_right(self._history_rvs, rv) :]

    def compact(self) -> None:
        """Forget the watch history: watches from any older resourceVersion now get 410 Gone."""
        with self.cond:
            self.history.clear()
            self._history_rvs.clear()
            self.oldest_rv = self.rv
            self._touch()

    def cut_streams(self) -> None:
        with self.cond:
            self.stream_epoch += 1
            self._touch()

    # --- writes ---------------------------------------------------------------------------------
    def create(self, resource: str, namespace: str, body: Any) -> Obj:
        kind, namespaced = RESOURCES[resource]
        if not isinstance(body, dict):
            raise StatusError(400, f"the body of the request was in an unknown format: expected a {kind} object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise StatusError(400, "metadata must be an object")
        if namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise StatusError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            raise invalid(resource, "", "metadata.name: Required value: name or generateName is required")
        obj["kind"], obj["apiVersion"] = kind, "v1"
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(transient, None)
        if resource == "pods":
            obj["status"] = {"phase": "Pending"}  # the server owns a new pod's status
        validate(resource, obj)
        with self.cond:
            key = (resource, namespace if namespaced else "", name)
            if key in self.objects:
                raise StatusError(409, f'{resource} "{name}" already exists', reason="AlreadyExists",
                                  details={"name": name, "kind": resource})
            return self._commit(key, "ADDED", None, obj)

    def update(
        self,
        resource: str,
        namespace: str,
        name: str,
        change: Callable[[Obj], Any],
        *,
        subresource: str = "",
        unconditional_rv: bool = True,
        internal: bool = False,
    ) -> Obj:
        """Apply `change` to a copy of the object, then enforce what the real server enforces and commit.

        `change` returns the proposed object. A metadata.resourceVersion in it that differs from the
        stored one is a 409 (optimistic concurrency); a proposal without one is unconditional when
        `unconditional_rv`. `internal` skips the pod-spec immutability rule (test helpers acting as kubelet).
        """
        with self.cond:
            key = (resource, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(resource, name)
            proposed = change(copy.deepcopy(old))
            if not isinstance(proposed, dict) or not isinstance(proposed.get("metadata"), dict):
                raise StatusError(400, "the patched object is not a valid object")
            meta, old_meta = proposed["metadata"], old["metadata"]
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv in (None, ""):
                if not unconditional_rv:
                    raise invalid(resource, name, "metadata.resourceVersion: Invalid value: 0x0: must be specified")
            elif str(wanted_rv) != old_meta["resourceVersion"]:
                raise conflict(resource, name)
            if meta.get("name") != name or meta.get("namespace", "") != old_meta.get("namespace", ""):
                found = meta.get("name")
                raise StatusError(400, f"the name of the object ({found}) does not match the name on the URL")
            for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if fixed in old_meta:
                    meta[fixed] = old_meta[fixed]
                else:
                    meta.pop(fixed, None)
            proposed["kind"], proposed["apiVersion"] = old["kind"], old["apiVersion"]
            if resource in _HAS_STATUS and subresource != "*":  # "*": the whole object (test helpers only)
                if subresource == "status":
                    proposed = {**copy.deepcopy(old), "status": proposed.get("status") or {}}
                else:
                    proposed["status"] = copy.deepcopy(old.get("status") or {})
                    if resource == "pods" and not internal:
                        _check_pod_spec_update(name, old.get("spec"), proposed.get("spec"))
            validate(resource, proposed)
            proposed["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
            if proposed == old:
                return copy.deepcopy(old)  # a no-op write does not bump the resourceVersion
            finalizers_gone = old_meta.get("deletionTimestamp") and not proposed["metadata"].get("finalizers")
            if finalizers_gone and not old_meta.get("deletionGracePeriodSeconds"):
                return self._commit(key, "DELETED", old, proposed)  # the last finalizer went: the object goes
            return self._commit(key, "MODIFIED", old, proposed)

    def delete(self, resource: str, namespace: str, name: str, options: Mapping[str, Any]) -> Obj:
        with self.cond:
            key = (resource, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(resource, name)
            pre = options.get("preconditions") or {}
            if pre.get("resourceVersion") not in (None, old["metadata"]["resourceVersion"]) or pre.get("uid") not in (
                None,
                old["metadata"]["uid"],
            ):
                raise conflict(resource, name)
            grace = options.get("gracePeriodSeconds")
            meta = old["metadata"]
            if resource == "pods" and self.graceful_pod_deletion and grace != 0 and (old.get("spec") or {}).get(
                "nodeName"
            ):
                if meta.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                seconds = grace if isinstance(grace, int) else (old.get("spec") or {}).get(
                    "terminationGracePeriodSeconds", 30
                )
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339(seconds)
                new["metadata"]["deletionGracePeriodSeconds"] = seconds
                return self._commit(key, "MODIFIED", old, new)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._commit(key, "MODIFIED", old, new)
            return self._commit(key, "DELETED", old, copy.deepcopy(old))

    def remove(self, resource: str, namespace: str, name: str) -> Obj:
        """Delete now, ignoring grace and finalizers (what the kubelet's final delete does)."""
        with self.cond:
            key = (resource, namespace, name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(resource, name)
            return self._commit(key, "DELETED", old, copy.deepcopy(old))

    def _commit(self, key: Key, kind: str, old: Obj | None, new: Obj) -> Obj:
        """Caller holds cond."""
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = new
        change = Change(self.rv, key[0], key[1], kind, copy.deepcopy(old), copy.deepcopy(new))
        self.history.append(change)
        self._history_rvs.append(self.rv)
        if len(self.history) > self.history_limit:
            drop = len(self.history) - self.history_limit
            del self.history[:drop]
            del self._history_rvs[:drop]
            self.oldest_rv = self.history[0].rv - 1
        self._touch()
        return copy.deepcopy(new)

    def touch(self) -> None:
        with self.cond:
            self._touch()

    def _touch(self) -> None:
        self.generation += 1
        self.cond.notify_all()


def validate(resource: str, obj: Obj) -> None:
    """The checks of the real server that catch client bugs: string maps, label syntax, required fields."""
    meta = obj["metadata"]
    name = meta.get("name", "")
    if not isinstance(name, str) or len(name) > 253 or not _NAME_RE.match(name):
        raise invalid(resource, str(name), f"metadata.name: Invalid value: {name!r}: not an RFC 1123 subdomain")
    for field in ("annotations", "labels"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise StatusError(
                400,
                f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field} of type map[string]string",
            )
    annotations = meta.get("annotations") or {}
    if sum(len(k) + len(v) for k, v in annotations.items()) > _ANNOTATIONS_MAX:
        raise invalid(resource, name, "metadata.annotations: Too long: must have at most 262144 bytes")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if not _LABEL_NAME_RE.match(label) or len(label) > 63 or (prefix and not _NAME_RE.match(prefix)):
            raise invalid(resource, name, f"metadata.labels: Invalid value: {key!r}: not a valid label key")
        if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            raise invalid(resource, name, f"metadata.labels: Invalid value: {value!r}: not a valid label value")
    if resource == "pods":
        containers = (obj.get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise invalid(resource, name, "spec.containers: Required value")
        names = [c.get("name") if isinstance(c, dict) else None for c in containers]
        names += [c.get("name") for c in (obj["spec"].get("initContainers") or []) if isinstance(c, dict)]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise invalid(resource, name, "spec.containers[*].name: container names must be present and unique")
    if resource == "events":
        involved = obj.get("involvedObject")
        if not isinstance(involved, dict):
            raise invalid(resource, name, "involvedObject: Required value")
        if involved.get("namespace", "") not in ("", meta.get("namespace")):
            raise invalid(resource, name, "involvedObject.namespace: Invalid value: does not match event.namespace")


def _check_pod_spec_update(name: str, old: Any, new: Any) -> None:
    """Pods are immutable but for images and a few fields; nodeName only changes through the binding."""

    def mutable_removed(spec: Any) -> Any:
        spec = copy.deepcopy(spec) or {}
        for group in ("containers", "initContainers"):
            for container in spec.get(group) or []:
                if isinstance(container, dict):
                    container.pop("image", None)
        for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            spec.pop(field, None)
        return spec

    if mutable_removed(old) != mutable_removed(new):
        raise invalid(
            "pods",
            name,
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
            "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
            "existing tolerations) or `spec.terminationGracePeriodSeconds`",
        )
