"""HAMi-named series, as HAMi's scheduler emits them (`Collect` in cmd/scheduler/metrics.go, v2.9.0), from a
NodeSnapshot: the same names, labels and values, so HAMi's dashboards and alerts work unchanged.

HAMi computes them from the pods' allocation records (`hami.io/vgpu-devices-allocated`): a GPU's
allocated memory and cores are the sums of what the records give its devices, and the shared count is
the number of those devices. hami-mig does the same from the records of the pods holding the GPU's
instances (an instance without a record counts with its real memory and no cores). Only managed GPUs
appear: they are the ones registered with the scheduler. Every series carries zone="vGPU" as HAMi's do.
hami-mig's richer truth (real instance memory, free instances) is in the `hami_mig_*` series.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hami_mig.agent.snapshot import GpuView, NodeSnapshot
from hami_mig.kube.register import register_type

ZONE = "vGPU"
MIB = 1024 * 1024

# HAMi's own HELP for nodeGPUMigInstance / hami_node_gpu_mig_instance_info is
# "GPU Sharing mode. 0 for hami-core, 1 for mig, 2 for mps", which describes another series.
MIG_INSTANCE_HELP = (
    "One series per MIG slot of the GPU's current geometry: 1 when an instance in that slot is "
    "held by a container, 0 when the slot is free or not yet created. migname/mig_name is "
    "<profile>-<slot>, the slot counted in the configured geometry's order (in placement start "
    "order when the layout matches no configured geometry)."
)


def device_type(gpu: GpuView) -> str:
    """HAMi v2.9's devicetype (its `Collect` reads the v2.8+ register type, whatever --hami-register-format the
    agent writes for older schedulers): the NVML name, `NVIDIA-` prepended only when it lacks it."""
    return register_type(gpu.name)


@dataclass(frozen=True)
class _Usage:
    """HAMi's DeviceUsage of one GPU: Used, Usedmem (MiB), Usedcores, from the allocation records."""

    used: int
    mem: int
    cores: int


def _usage(gpu: GpuView) -> _Usage:
    held = [(i, i.holder) for i in gpu.instances if i.holder is not None]
    return _Usage(len(held), sum(h.device_mib if h.device_mib is not None else i.memory_mib for i, h in held),
                  sum(h.device_cores for _i, h in held))


class _Series(NamedTuple):
    """One series as Collect declares it under both names (v2.9's HELP where it differs from the legacy one)."""

    legacy: str
    v29: str
    help: str
    legacy_labels: tuple[str, ...]
    v29_labels: tuple[str, ...]
    help29: str = ""

    def family(self, v29: bool) -> GaugeMetricFamily:
        if v29:
            return GaugeMetricFamily(self.v29, self.help29 or self.help, labels=[*self.v29_labels, "zone"])
        return GaugeMetricFamily(self.legacy, self.help, labels=[*self.legacy_labels, "zone"])


_GPU = ("nodeid", "deviceuuid", "deviceidx")
_GPU29 = ("node", "device_uuid", "device_index")
_PER_GPU = tuple(_Series(*spec) for spec in (
    ("GPUDeviceMemoryLimit", "hami_gpu_memory_limit_bytes", "Device memory limit for a certain GPU",
     (*_GPU, "devicetype"), (*_GPU29, "device_type")),
    ("GPUDeviceCoreLimit", "hami_gpu_core_limit_ratio", "Device memory core limit for a certain GPU",
     (*_GPU, "devicetype"), (*_GPU29, "device_type"), "Device core limit for a certain GPU"),
    ("GPUDeviceMemoryAllocated", "hami_gpu_memory_allocated_bytes", "Device memory allocated for a certain GPU",
     (*_GPU, "devicecores", "devicetype"), (*_GPU29, "device_cores", "device_type")),
    ("GPUDeviceSharedNum", "hami_gpu_shared_count", "Number of containers sharing this GPU",
     (*_GPU, "devicetype"), (*_GPU29, "device_type")),
    ("GPUDeviceCoreAllocated", "hami_gpu_core_allocated_ratio", "Device core allocated for a certain GPU",
     (*_GPU, "devicetype"), (*_GPU29, "device_type")),
    ("nodeGPUOverview", "hami_node_gpu_overview", "GPU overview on a certain node",
     (*_GPU, "devicecores", "sharedcontainers", "devicememorylimit", "devicetype"),
     (*_GPU29, "device_cores", "shared_containers", "device_memory_limit", "device_type")),
    ("nodeGPUMemoryPercentage", "hami_node_gpu_memory_allocated_ratio",
     "GPU Memory Allocated Percentage on a certain GPU", _GPU, _GPU29),
))
_PER_DEVICE = tuple(_Series(*spec) for spec in (
    ("vGPUMemoryAllocated", "hami_vgpu_memory_allocated_bytes", "vGPU memory allocated from a container",
     ("podnamespace", "nodename", "podname", "containeridx", "deviceuuid"),
     ("namespace", "node", "pod", "container_index", "device_uuid")),
    ("vGPUCoreAllocated", "hami_vgpu_core_allocated_ratio", "vGPU core allocated from a container",
     ("podnamespace", "nodename", "podname", "containeridx", "deviceuuid"),
     ("namespace", "node", "pod", "container_index", "device_uuid")),
))


def _gpu_values(node: str, gpu: GpuView, u: _Usage) -> list[tuple[list[str], float]]:
    """(labels without zone, value) for each _PER_GPU series, in its order."""
    dev = [node, gpu.uuid, str(gpu.index)]
    kind = device_type(gpu)
    total = gpu.memory_mib
    return [
        ([*dev, kind], float(total * MIB)),
        ([*dev, kind], 100.0),
        ([*dev, str(u.cores), kind], float(u.mem * MIB)),
        ([*dev, kind], float(u.used)),
        ([*dev, kind], float(u.cores)),
        ([*dev, str(u.cores), str(u.used), str(total), kind], float(u.mem * MIB)),
        (dev, u.mem / total if total else 0.0),
    ]


def _device_values(node: str, gpu: GpuView) -> list[tuple[list[str], float, float]]:
    """(labels without zone, memory bytes, cores) per container device, one series per device as HAMi."""
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    for inst in gpu.instances:
        h = inst.holder
        if h is None:
            continue
        key = (h.namespace, node, h.pod, str(h.container), h.device or gpu.uuid)
        mib = h.device_mib if h.device_mib is not None else inst.memory_mib
        before = out.get(key, (0.0, 0.0))  # two instances of one container on one GPU: one series
        out[key] = (before[0] + mib * MIB, before[1] + h.device_cores)
    return [(list(k), m, c) for k, (m, c) in out.items()]


def hami_families(snap: NodeSnapshot, legacy: bool, v29: bool) -> Iterator[Metric]:
    """Every HAMi family the switches turn on (empty ones included, for describe).

    `legacy`: HAMi's camelCase names (HAMi v2.9 emits them with --legacy-metrics, earlier releases always);
    `v29`: the names HAMi v2.9 emits by default (hami_node_gpu_mig_instance_info, hami_gpu_*, hami_vgpu_*).
    """
    managed = [g for g in snap.gpus if g.managed]
    usage = {g.uuid: _usage(g) for g in managed}
    if legacy:
        yield _mig_slots(snap.node, managed, "nodeGPUMigInstance", ["nodeid", "deviceuuid", "deviceidx", "migname"])
        yield from _usage_families(snap.node, managed, usage, v29=False)
    if v29:
        yield _mig_slots(snap.node, managed, "hami_node_gpu_mig_instance_info",
                         ["node", "device_uuid", "device_index", "mig_name"])
        yield from _usage_families(snap.node, managed, usage, v29=True)


def _usage_families(node: str, gpus: list[GpuView], usage: dict[str, _Usage], *, v29: bool) -> Iterator[Metric]:
    per_gpu = [spec.family(v29) for spec in _PER_GPU]
    for gpu in gpus:
        for family, (labels, value) in zip(per_gpu, _gpu_values(node, gpu, usage[gpu.uuid]), strict=True):
            family.add_metric([*labels, ZONE], value)
    yield from per_gpu
    memory, cores = (spec.family(v29) for spec in _PER_DEVICE)
    for gpu in gpus:
        for labels, mem, core in _device_values(node, gpu):
            memory.add_metric([*labels, ZONE], mem)
            cores.add_metric([*labels, ZONE], core)
    yield memory
    yield cores


def _mig_slots(node: str, gpus: list[GpuView], name: str, labels: list[str]) -> Metric:
    """HAMi emits a GPU's slots only while its usage list exists: while at least one slot is allocated."""
    family = GaugeMetricFamily(name, MIG_INSTANCE_HELP, labels=[*labels, "zone"])
    for gpu in gpus:
        if not any(slot.in_use for slot in gpu.slots):
            continue
        idx = str(gpu.index)
        for slot in gpu.slots:
            family.add_metric([node, gpu.uuid, idx, slot.mig_name, ZONE], 1.0 if slot.in_use else 0.0)
    return family
