"""Mutating admission webhook: send GPU pods to the hami scheduler, fill defaults, refuse bad requests.

HAMi's rules (`Handle` in pkg/scheduler/webhook.go and `mutateContainerResource` in
pkg/device/nvidia/device.go, v2.9.0): a container whose limits name `nvidia.com/gpu`, or GPU memory
or cores (then `nvidia.com/gpu: <defaultGPUNum>` is added), sends the pod to the scheduler;
privileged containers are skipped; a pod naming another scheduler is left alone; a GPU pod that
already has `spec.nodeName` is refused; a pod without containers is refused. hami-mig also looks at
init containers and refuses requests that can never be served, naming the field (HAMi admits them and
the pod stays Pending); docs/migrating-from-hami.md lists each difference.
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


def _privileged(spec: Mapping[str, Any]) -> set[tuple[bool, int]]:
    """(init, index in pod_containers' numbering) of privileged containers: HAMi's webhook skips them."""
    out: set[tuple[bool, int]] = set()
    inits = spec.get("initContainers") or []
    for init, group, offset in ((True, inits, 0), (False, spec.get("containers") or [], len(inits))):
        for i, container in enumerate(group):
            context = container.get("securityContext") if isinstance(container, Mapping) else None
            if isinstance(context, Mapping) and context.get("privileged") is True:
                out.add((init, offset + i))
    return out


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
        spec = pod.get("spec") or {}
        if not (spec.get("containers") if isinstance(spec, Mapping) else None):
            return Verdict(False, message="spec.containers: pod has no containers")
        try:
            containers = pod_containers(pod)
        except InputError as exc:
            return Verdict(False, message=str(exc))
        privileged = _privileged(spec)
        gpu = [c for c in containers if (c.init, c.index) not in privileged
               and any(c.value(n) is not None for n in names.all)]
        if not gpu:
            return Verdict(True)
        current = spec.get("schedulerName") or ""
        if current not in ("", DEFAULT_SCHEDULER, self.config.scheduler_name):
            return Verdict(True, warnings=(f"spec.schedulerName {current!r} kept; hami-mig's MIG planning "
                                           f"needs {self.config.scheduler_name!r}",))
        mode = pod_vgpu_mode(pod)
        if mode is not None:
            parts = [p.strip() for p in mode.split(",")]
            unknown = [p for p in parts if p not in MODES]
            if unknown:
                return Verdict(False, message=f"{VGPU_MODE}: {mode!r} is not valid; one mode or a comma-separated "
                                              f"list of {', '.join(MODES)} (unknown: {', '.join(map(repr, unknown))}); "
                                              "HAMi matches it as a substring, so this pod could never be scheduled")
        for c in gpu:
            problem = self._check(pod, c)
            if problem:
                return Verdict(False, message=problem)
        if mode is not None and MODE_MIG not in mode:
            return Verdict(True, warnings=(f"{VGPU_MODE}={mode!r} excludes mig: not sent to "
                                           f"{self.config.scheduler_name}",))
        if spec.get("nodeName"):
            return Verdict(False, message=f"spec.nodeName: {spec['nodeName']!r} is set on a GPU pod; the pod has "
                                          f"a node assigned, so {self.config.scheduler_name} cannot choose its MIG "
                                          "devices (as HAMi, such a pod is refused: leave nodeName empty)")
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
