"""Mutating admission webhook: send HAMi-style GPU pods to the hami scheduler, fill defaults, refuse bad requests.

A pod is redirected when a container asks for GPU memory (`nvidia.com/gpumem` or
`nvidia.com/gpumem-percentage`) or cores, or the pod names a `nvidia.com/vgpu-mode`. Pods asking only
for `nvidia.com/gpu` are left to the default scheduler: that resource name is shared with NVIDIA's own
device plugin on non-MIG nodes (hami-mig's agent serves them in its standalone mode).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODE_MIG, MODES, VGPU_MODE
from hami_mig.kube.resources import ContainerResources, container_request, pod_containers, pod_vgpu_mode
from hami_mig.mig.geometry import resolve_for_gpu
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.protocol import ProtocolError
from hami_mig.scheduler.protocol import field as doc_field

DEFAULT_SCHEDULER = "default-scheduler"
_REVIEW_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


@dataclass(frozen=True)
class Largest:
    """The largest instance any configured geometry offers: a bigger gpumem can never be served."""

    memory_mib: int
    profile: str
    model: str


def largest_profile(config: SchedulerConfig) -> Largest | None:
    best: Largest | None = None
    for model in config.catalogue.models:
        if config.geometries == "any":
            profiles = [model.largest]
        else:
            geos = resolve_for_gpu(config.device_config, model, config.catalogue)
            profiles = [s.profile for g in geos.geometries for s in g.slots]
        for p in profiles:
            if best is None or p.memory_mib > best.memory_mib:
                best = Largest(p.memory_mib, p.name, model.name)
    return best


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    patch: tuple[dict[str, Any], ...] = ()
    message: str = ""
    warnings: tuple[str, ...] = field(default=())


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Webhook:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.names = config.names
        self.largest = largest_profile(config)

    # --- the decision on one pod ----------------------------------------------------------------
    def mutate(self, pod: Mapping[str, Any]) -> Verdict:
        names = self.names
        try:
            containers = pod_containers(pod)
        except InputError as exc:
            return Verdict(False, message=str(exc))
        gpu = [c for c in containers if any(c.value(n) is not None for n in names.all)]
        if not gpu:
            return Verdict(True)
        mode = pod_vgpu_mode(pod)
        if mode is not None:
            parts = [p.strip() for p in mode.split(",")]
            unknown = [p for p in parts if p not in MODES]
            if unknown:
                return Verdict(False, message=f"{VGPU_MODE}: {mode!r} is not valid; one mode or a comma-separated "
                                              f"list of {', '.join(MODES)} (unknown: {', '.join(map(repr, unknown))})")
        sized = any(c.value(n) is not None for c in gpu for n in (names.memory, names.memory_percentage, names.cores))
        if not sized and mode is None:
            return Verdict(True)
        for c in gpu:
            problem = self._check(pod, c)
            if problem:
                return Verdict(False, message=problem)
        if mode is not None and MODE_MIG not in mode:
            return Verdict(True, warnings=(f"{VGPU_MODE}={mode!r} excludes mig: not sent to "
                                           f"{self.config.scheduler_name}",))
        spec = pod.get("spec") or {}
        current = spec.get("schedulerName") or ""
        if current not in ("", DEFAULT_SCHEDULER, self.config.scheduler_name):
            return Verdict(True, warnings=(f"spec.schedulerName {current!r} kept; hami-mig's MIG planning "
                                           f"needs {self.config.scheduler_name!r}",))
        ops: list[dict[str, Any]] = []
        for c in gpu:
            ops += self._default_count(spec, c)
        ops.append({"op": "add", "path": "/spec/schedulerName", "value": self.config.scheduler_name})
        return Verdict(True, tuple(ops))

    def _check(self, pod: Mapping[str, Any], c: ContainerResources) -> str:
        try:
            request = container_request(pod, c.index, self.names)
        except InputError as exc:
            return str(exc)
        big = self.largest
        if request is not None and request.memory_mib is not None and big and request.memory_mib > big.memory_mib:
            return (f"{self.names.memory} (container {c.name!r}): {request.memory_mib} is not valid; the largest MIG "
                    f"instance the configured geometries offer is {big.profile} on {big.model} "
                    f"({big.memory_mib} MiB)")
        return ""

    def _default_count(self, spec: Mapping[str, Any], c: ContainerResources) -> list[dict[str, Any]]:
        """`nvidia.com/gpu: <defaultGPUNum>` where a container gives memory or cores but no count."""
        names = self.names
        if c.value(names.count) is not None:
            return []
        group = "initContainers" if c.init else "containers"
        position = c.index - (0 if c.init else len(spec.get("initContainers") or []))
        base = ("spec", group, position, "resources")
        value = str(names.default_gpu_num)
        raw = (spec.get(group) or [])[position]
        resources = raw.get("resources") if isinstance(raw, Mapping) else None
        ops: list[dict[str, Any]] = []
        if not isinstance(resources, Mapping):
            return [{"op": "add", "path": _pointer(*base), "value": {"limits": {names.count: value}}}]
        for kind in ("limits", "requests"):
            section = resources.get(kind)
            if kind == "requests" and not (isinstance(section, Mapping) and
                                           any(n in section for n in names.all)):
                continue  # requests of extended resources default to their limits
            if isinstance(section, Mapping):
                ops.append({"op": "add", "path": _pointer(*base, kind, names.count), "value": value})
            else:
                ops.append({"op": "add", "path": _pointer(*base, kind), "value": {names.count: value}})
        return ops

    # --- AdmissionReview ------------------------------------------------------------------------
    def review(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, Mapping):
            raise ProtocolError("AdmissionReview: a JSON object is required")
        version = doc_field(doc, "apiVersion") or _REVIEW_VERSIONS[0]
        if version not in _REVIEW_VERSIONS or doc_field(doc, "kind") != "AdmissionReview":
            raise ProtocolError(f"an AdmissionReview of {' or '.join(_REVIEW_VERSIONS)} is required, "
                                f"got {version}/{doc_field(doc, 'kind')}")
        request = doc_field(doc, "request")
        if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
            raise ProtocolError("AdmissionReview.request with a uid is required")
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        kind = request.get("kind") or {}
        obj = request.get("object")
        is_pod = isinstance(kind, Mapping) and kind.get("kind") == "Pod" and not kind.get("group")
        if is_pod and request.get("operation", "CREATE") == "CREATE":
            if not isinstance(obj, Mapping):
                raise ProtocolError("AdmissionReview.request.object: the Pod is required")
            verdict = self.mutate(obj)
            response["allowed"] = verdict.allowed
            if not verdict.allowed:
                response["status"] = {"status": "Failure", "code": 400, "reason": "BadRequest",
                                      "message": verdict.message}
            elif verdict.patch:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(list(verdict.patch)).encode()).decode()
            if verdict.warnings:
                response["warnings"] = list(verdict.warnings)
        return {"apiVersion": version, "kind": "AdmissionReview", "response": response}
