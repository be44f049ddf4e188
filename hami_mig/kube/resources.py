"""From a pod's resource limits to the planner's Request, rejecting every value HAMi would silently misread."""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    RESOURCE_GPU,
    RESOURCE_GPUCORES,
    RESOURCE_GPUMEM,
    RESOURCE_GPUMEM_PERCENTAGE,
    VGPU_MODE,
)
from hami_mig.mig.geometry import DeviceConfig
from hami_mig.mig.request import Request

_INT32_MAX = 2**31 - 1
_QUANTITY = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")


@dataclass(frozen=True)
class ResourceNames:
    """The resource names HAMi's device-config lets a cluster rename, and the webhook's default GPU count."""

    count: str = RESOURCE_GPU
    memory: str = RESOURCE_GPUMEM
    memory_percentage: str = RESOURCE_GPUMEM_PERCENTAGE
    cores: str = RESOURCE_GPUCORES
    default_gpu_num: int = 1
    memory_factor: int = 1
    """HAMi's `memoryFactor` (v2.8+): nvidia.com/gpumem is counted in units of this many MiB."""
    default_memory: int = 0
    default_cores: int = 0

    @classmethod
    def of(cls, config: DeviceConfig) -> ResourceNames:
        """The names, defaults and memory factor a parsed device config sets."""
        return cls(count=config.resource_count_name, memory=config.resource_memory_name,
                   memory_percentage=config.resource_memory_percentage_name, cores=config.resource_core_name,
                   default_gpu_num=config.default_gpu_num, memory_factor=config.memory_factor,
                   default_memory=config.default_memory, default_cores=config.default_cores)

    @classmethod
    def from_device_config(cls, nvidia: Mapping[str, Any]) -> ResourceNames:
        """From the `nvidia:` section of device-config.yaml; absent keys keep HAMi's defaults."""
        values: dict[str, Any] = {}
        for attr, key in (
            ("count", "resourceCountName"),
            ("memory", "resourceMemoryName"),
            ("memory_percentage", "resourceMemoryPercentageName"),
            ("cores", "resourceCoreName"),
        ):
            if nvidia.get(key) is not None:
                name = nvidia[key]
                if not isinstance(name, str) or "/" not in name or name != name.strip():
                    raise InputError(f"nvidia.{key}", name, "a resource name like nvidia.com/gpu")
                values[attr] = name
        default = nvidia.get("defaultGPUNum")
        if default is not None:
            if isinstance(default, bool) or not isinstance(default, int) or default < 1:
                raise InputError("nvidia.defaultGPUNum", default, "a whole number >= 1")
            values["default_gpu_num"] = default
        return cls(**values)

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.count, self.memory, self.memory_percentage, self.cores)


DEFAULT_NAMES = ResourceNames()


@dataclass(frozen=True)
class ContainerResources:
    """One container as the devices annotation indexes it: init containers first, then containers."""

    index: int
    name: str
    init: bool
    limits: Mapping[str, Any]
    requests: Mapping[str, Any]

    def value(self, resource: str) -> Any | None:
        """The limit, or the request when no limit is set (HAMi reads limits first)."""
        if resource in self.limits:
            return self.limits[resource]
        return self.requests.get(resource)


def pod_containers(pod: Any) -> tuple[ContainerResources, ...]:
    """Init containers then containers of a V1Pod or its dict form (camelCase or snake_case keys)."""
    spec = _get(pod, "spec")
    if spec is None:
        raise InputError("pod spec", None, "a pod with spec.containers")
    groups = ((True, _get(spec, "initContainers", "init_containers")), (False, _get(spec, "containers")))
    result: list[ContainerResources] = []
    for init, containers in groups:
        if containers is None:
            continue
        if not isinstance(containers, list | tuple):
            raise InputError("pod spec containers", containers, "a list of containers")
        for container in containers:
            resources = _get(container, "resources")
            limits = _get(resources, "limits") or {}
            requests = _get(resources, "requests") or {}
            if not isinstance(limits, Mapping) or not isinstance(requests, Mapping):
                raise InputError("container resources", resources, "limits and requests are maps of name to quantity")
            name = _get(container, "name")
            result.append(ContainerResources(len(result), str(name or f"#{len(result)}"), init, limits, requests))
    return tuple(result)


def container_request(pod: Any, index: int, names: ResourceNames = DEFAULT_NAMES) -> Request | None:
    """Container `index`'s GPU request, or None when it asks for none of our resources."""
    containers = pod_containers(pod)
    if not 0 <= index < len(containers):
        raise InputError("container index", index, f"0 to {len(containers) - 1} (init containers first)")
    return _request(containers[index], names)


def gpu_containers(pod: Any, names: ResourceNames = DEFAULT_NAMES) -> tuple[int, ...]:
    """Indices of the containers that ask for GPUs (a memory or cores limit alone implies the default count)."""
    return tuple(c.index for c in pod_containers(pod) if any(c.value(name) is not None for name in names.all))


def _request(container: ContainerResources, names: ResourceNames) -> Request | None:
    """HAMi's reading (`GenerateResourceRequests` and `Fit` in pkg/device/nvidia/device.go, v2.9.0): a count
    of 0 asks for no GPU; gpumem wins over gpumem-percentage and is multiplied by memoryFactor; a gpumem of
    0 counts as none given; neither means defaultMemory, else the whole GPU; gpucores defaults to
    defaultCores and is clamped to 100."""
    raw = {name: container.value(name) for name in names.all}
    if all(value is None for value in raw.values()):
        return None
    count = names.default_gpu_num
    if raw[names.count] is not None:
        count = _whole(raw[names.count], names.count, container, "GPUs", allow_zero=True)
        if count == 0:
            return None
    memory = None
    if raw[names.memory] is not None:
        memory = _whole(raw[names.memory], names.memory, container, "MiB", allow_zero=True) or None
    percent = None
    if memory is None and raw[names.memory_percentage] is not None:
        percent = _whole(raw[names.memory_percentage], names.memory_percentage, container, "percent", maximum=100)
    if memory is not None:
        memory *= names.memory_factor
        if memory > _INT32_MAX:
            raise InputError(f"{names.memory} (container {container.name!r})", raw[names.memory],
                             f"too large once multiplied by memoryFactor {names.memory_factor}")
    elif percent is None and names.default_memory:
        memory = names.default_memory
    cores = names.default_cores or None
    if raw[names.cores] is not None:
        cores = min(_whole(raw[names.cores], names.cores, container, "percent", allow_zero=True), 100)
    return Request(count=count, memory_mib=memory, memory_percent=percent, cores=cores)


def _whole(
    value: Any, key: str, container: ContainerResources, unit: str, maximum: int = _INT32_MAX, allow_zero: bool = False
) -> int:
    field = f"{key} (container {container.name!r})"
    lowest = 0 if allow_zero else 1
    expected = f"a whole number of {unit} from {lowest} to {maximum}"
    if isinstance(value, bool):
        raise InputError(field, value, f"not a number: {expected}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(field, value, f"not a number: {expected}")
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InputError(field, value, f"not a number: {expected}")
    if not text.isascii() or not _QUANTITY.match(text):
        raise InputError(field, value, f"not a number (a Kubernetes quantity of ASCII digits): {expected}")
    with decimal.localcontext(prec=200):
        try:
            number = parse_quantity(text)  # type: ignore[no-untyped-call]
        except (ValueError, ArithmeticError):
            raise InputError(field, value, f"not a number: {expected}") from None
        if number < 0:
            raise InputError(field, value, f"negative: {expected}")
        if number != number.to_integral_value():
            raise InputError(field, value, f"fractional: {expected}")
        if number == 0 and not allow_zero:
            raise InputError(field, value, f"zero asks for nothing: {expected}")
        if number > maximum:
            reason = "too large" if maximum == _INT32_MAX else f"over {maximum}"
            raise InputError(field, value, f"{reason}: {expected}")
        return int(number)


def pod_vgpu_mode(pod: Any) -> str | None:
    """The `nvidia.com/vgpu-mode` annotation as written, None only when absent (an empty value is kept: HAMi's
    `checkType` applies its substring rule to it, so it allows no mode)."""
    annotations = _get(_get(pod, "metadata"), "annotations") or {}
    value = annotations.get(VGPU_MODE) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None


def mode_allows(requested: str | None, node_mode: str) -> bool:
    """HAMi's rule (`checkType`): the annotation must contain the GPU's mode as a substring; absent = any mode."""
    return requested is None or node_mode in requested


def check_vgpu_mode(pod: Any, node_mode: str) -> None:
    requested = pod_vgpu_mode(pod)
    if not mode_allows(requested, node_mode):
        raise InputError(VGPU_MODE, requested, f"the pod must allow this node's mode {node_mode!r} to run here")


def _get(obj: Any, *keys: str) -> Any:
    """A field of a kubernetes model (snake_case attribute) or of its dict form (camelCase or snake_case key)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        for key in keys:
            if key in obj:
                return obj[key]
        return None
    for key in keys:
        attr = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        if hasattr(obj, attr):
            return getattr(obj, attr)
    return None
