"""hami-mig's own series (`hami_mig_*`) computed from a NodeSnapshot: layout, capacity, health, readiness.

Per-GPU series beyond hami_mig_gpu_info / hami_mig_gpu_healthy cover managed GPUs only: the agent
neither creates nor frees instances on the others. No pod label anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric

from hami_mig.agent.snapshot import GpuView, NodeSnapshot

MIB = 1024 * 1024
STATES: tuple[str, ...] = ("in_use", "free", "pending")
GPU = ["node", "device_uuid", "device_index"]


def own_families(snap: NodeSnapshot) -> Iterator[Metric]:
    node = snap.node
    gpu_info = InfoMetricFamily(
        "hami_mig_gpu", "One series per physical GPU of the node (value 1): NVML name, MIG mode "
        "(enabled, disabled, pending: a mode change waits for a GPU reset, unknown) and whether the agent "
        "manages it.", labels=[*GPU, "name", "mig_mode", "managed"])
    healthy = GaugeMetricFamily("hami_mig_gpu_healthy", "1 when the GPU is healthy, 0 when not.", labels=GPU)
    memory = GaugeMetricFamily("hami_mig_gpu_memory_bytes", "Physical memory of a managed GPU, in bytes.",
                               labels=GPU, unit="bytes")
    allocated = GaugeMetricFamily(
        "hami_mig_gpu_memory_allocated_bytes", "Memory of a managed GPU's MIG instances in use, in bytes.",
        labels=GPU, unit="bytes")
    instances = GaugeMetricFamily(
        "hami_mig_instances",
        "MIG instances on a managed GPU by profile and state (in_use: held by a container; free: created "
        "and idle; pending: on a GPU whose MIG mode change is pending).", labels=[*GPU, "profile", "state"])
    info = InfoMetricFamily(
        "hami_mig_instance", "One series per MIG instance on a managed GPU (value 1): its UUID, profile, "
        "GPU/compute instance ids and placement (start and size in memory slices).",
        labels=[*GPU, "mig_uuid", "profile", "gpu_instance_id", "compute_instance_id",
                "placement_start", "placement_size"])
    capacity = GaugeMetricFamily(
        "hami_mig_free_capacity",
        "How many more instances of the profile could be created on the managed GPU now without "
        "touching any instance in use (free instances may be destroyed to make room).",
        labels=[*GPU, "profile"])
    fragmentation = GaugeMetricFamily(
        "hami_mig_gpu_fragmentation_ratio",
        "1 - largest placeable instance / memory slices not in use, on a managed GPU: 0 when the free "
        "memory can be carved as one instance, rising as it scatters.", labels=GPU, unit="ratio")
    for gpu in snap.gpus:
        labels = [node, gpu.uuid, str(gpu.index)]
        gpu_info.add_metric([*labels, gpu.name, gpu.mig_mode, "true" if gpu.managed else "false"], {})
        healthy.add_metric(labels, 1.0 if gpu.healthy else 0.0)
        if not gpu.managed:
            continue
        if gpu.memory_mib > 0:
            memory.add_metric(labels, float(gpu.memory_mib * MIB))
        allocated.add_metric(labels, float(sum(i.memory_mib for i in gpu.instances if i.state == "in_use") * MIB))
        for (profile, state), n in sorted(_instance_counts(gpu).items()):
            instances.add_metric([*labels, profile, state], float(n))
        for inst in sorted(gpu.instances, key=lambda i: (i.start, i.profile)):
            info.add_metric([*labels, inst.mig_uuid or "", inst.profile, _id(inst.gi_id), _id(inst.ci_id),
                             str(inst.start), str(inst.size)], {})
        for profile, n in sorted(gpu.free_capacity.items()):
            capacity.add_metric([*labels, profile], float(n))
        fragmentation.add_metric(labels, float(gpu.fragmentation))
    yield from (gpu_info, healthy, memory, allocated, instances, info, capacity, fragmentation)
    yield from _node_families(snap)


def _node_families(snap: NodeSnapshot) -> Iterator[Metric]:
    labels = [snap.node]
    for name, doc, value in (
        ("hami_mig_pods_waiting", "Pods bound to this node whose MIG allocation has not happened yet.",
         float(snap.pods_waiting)),
        ("hami_mig_kubelet_registered", "1 when the device plugin is registered with the kubelet.",
         _bool(snap.registered)),
        ("hami_mig_nvml_up", "1 when NVML answered the agent's last call.", _bool(snap.nvml_ok)),
        ("hami_mig_apiserver_up", "1 when the Kubernetes API server answered the agent's last call.",
         _bool(snap.api_ok)),
    ):
        family = GaugeMetricFamily(name, doc, labels=["node"])
        family.add_metric(labels, value)
        yield family


def _instance_counts(gpu: GpuView) -> dict[tuple[str, str], int]:
    """Counts for every profile present on the GPU, all three states (zeros included)."""
    profiles = {i.profile for i in gpu.instances}
    counts = {(p, s): 0 for p in profiles for s in STATES}
    for inst in gpu.instances:
        state = "pending" if gpu.mig_mode == "pending" else inst.state
        counts[(inst.profile, state)] += 1
    return counts


def _id(value: int | None) -> str:
    return "" if value is None else str(value)


def _bool(value: bool) -> float:
    return 1.0 if value else 0.0
