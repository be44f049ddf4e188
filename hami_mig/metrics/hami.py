"""HAMi-compatible series (HAMi's camelCase names, and the v2.9 name of the MIG slot series) from a NodeSnapshot.

Only managed GPUs appear: they are the ones registered with the scheduler, the only ones HAMi
knows about. Every series carries zone="vGPU" as HAMi's do.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hami_mig.agent.snapshot import GpuView, NodeSnapshot

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
MEMORY_LIMIT_HELP = "Physical memory of the GPU, in bytes."
MEMORY_ALLOCATED_HELP = "Memory of the GPU's MIG instances in use, in bytes."
SHARED_HELP = "Number of the GPU's MIG instances in use."
VGPU_MEMORY_HELP = "Memory of the MIG instance a container holds, in bytes (one series per held instance)."


def device_type(gpu: GpuView) -> str:
    """HAMi's devicetype: the NVML name, `NVIDIA-` prefixed when it lacks it."""
    return gpu.name if gpu.name.upper().startswith("NVIDIA") else f"NVIDIA-{gpu.name}"


def hami_families(snap: NodeSnapshot, legacy: bool, v29: bool) -> Iterator[Metric]:
    """Every HAMi-compatible family the switches turn on (empty ones included, for describe).

    `legacy`: HAMi's camelCase names (the MIG slot series and the memory/sharing ones);
    `v29`: the v2.9 name of the MIG slot series, hami_node_gpu_mig_instance_info.
    """
    managed = [g for g in snap.gpus if g.managed]
    if legacy:
        yield _mig_slots(snap.node, managed, "nodeGPUMigInstance", ["nodeid", "deviceuuid", "deviceidx", "migname"])
    if v29:
        yield _mig_slots(snap.node, managed, "hami_node_gpu_mig_instance_info",
                         ["node", "device_uuid", "device_index", "mig_name"])
    if legacy:
        yield from _memory(snap.node, managed)


def _mig_slots(node: str, gpus: list[GpuView], name: str, labels: list[str]) -> Metric:
    family = GaugeMetricFamily(name, MIG_INSTANCE_HELP, labels=[*labels, "zone"])
    for gpu in gpus:
        idx = str(gpu.index)
        for slot in gpu.slots:
            family.add_metric([node, gpu.uuid, idx, slot.mig_name, ZONE], 1.0 if slot.in_use else 0.0)
    return family


def _memory(node: str, gpus: list[GpuView]) -> Iterator[Metric]:
    gpu_labels = ["nodeid", "deviceuuid", "deviceidx", "devicetype", "zone"]
    limit = GaugeMetricFamily("GPUDeviceMemoryLimit", MEMORY_LIMIT_HELP, labels=gpu_labels)
    allocated = GaugeMetricFamily("GPUDeviceMemoryAllocated", MEMORY_ALLOCATED_HELP, labels=gpu_labels)
    shared = GaugeMetricFamily("GPUDeviceSharedNum", SHARED_HELP, labels=gpu_labels)
    vgpu = GaugeMetricFamily(
        "vGPUMemoryAllocated", VGPU_MEMORY_HELP,
        labels=["podnamespace", "nodename", "podname", "containeridx", "deviceuuid", "zone"])
    for gpu in gpus:
        in_use = [i for i in gpu.instances if i.state == "in_use"]
        dev = [node, gpu.uuid, str(gpu.index), device_type(gpu), ZONE]
        if gpu.memory_mib > 0:
            limit.add_metric(dev, float(gpu.memory_mib * MIB))
        allocated.add_metric(dev, float(sum(i.memory_mib for i in in_use) * MIB))
        shared.add_metric(dev, float(len(in_use)))
        held: dict[tuple[str, str, str], int] = {}
        for inst in gpu.instances:
            if inst.holder is not None:
                key = (inst.holder.namespace, inst.holder.pod, str(inst.holder.container))
                held[key] = held.get(key, 0) + inst.memory_mib  # one series per container and GPU
        for (namespace, pod, container), mib in held.items():
            vgpu.add_metric([namespace, node, pod, container, gpu.uuid, ZONE], float(mib * MIB))
    yield from (limit, allocated, shared, vgpu)
