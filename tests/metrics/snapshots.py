"""Hand-built NodeSnapshots for the metrics tests and benchmark."""

from __future__ import annotations

from hami_mig.agent.snapshot import GpuView, Holder, InstanceView, NodeSnapshot, SlotView

A40 = "NVIDIA A100-SXM4-40GB"
NODE = "node-a"
FREE_A40 = {"1g.5gb": 7, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}


def inst(profile: str, start: int, size: int, mib: int, holder: Holder | None = None, *,
         gpu: int = 0, gi: int | None = None, ci: int | None = 0, state: str | None = None) -> InstanceView:
    return InstanceView(
        profile=profile, start=start, size=size, memory_mib=mib,
        state="in_use" if (state or ("in_use" if holder else "free")) == "in_use" else "free",
        mig_uuid=f"MIG-{gpu}-{profile}-{start}", gi_id=gi if gi is not None else start + 1, ci_id=ci,
        holder=holder)


def busy_gpu(index: int = 0) -> GpuView:
    """Geometry 1 of the A100-40GB ([1x 1g.5gb, 3x 2g.10gb]): the 1g and the first 2g in use."""
    return GpuView(
        index=index, uuid=f"GPU-{index:04d}", name=A40, memory_mib=40960, mig_mode="enabled", healthy=True,
        managed=True, memory_slices=8, geometry_index=1,
        slots=(SlotView(0, "1g.5gb", True), SlotView(1, "2g.10gb", True), SlotView(2, "2g.10gb", False),
               SlotView(3, "2g.10gb", False)),
        instances=(
            inst("2g.10gb", 0, 2, 9856, Holder("ml", "train", 1, uid="u-1"), gpu=index),
            inst("2g.10gb", 2, 2, 9856, gpu=index),
            inst("1g.5gb", 6, 1, 4864, Holder("default", "pod-a", 0, uid="u-2"), gpu=index),
        ),
        free_capacity={"1g.5gb": 3, "1g.10gb": 2, "2g.10gb": 2, "3g.20gb": 1, "4g.20gb": 0, "7g.40gb": 0},
        fragmentation=0.25,
    )


def idle_gpu(index: int = 1) -> GpuView:
    """MIG enabled, no instance: no geometry chosen, no slots (HAMi emits nothing for it)."""
    return GpuView(index=index, uuid=f"GPU-{index:04d}", name=A40, memory_mib=40960, mig_mode="enabled",
                   healthy=True, managed=True, memory_slices=8, free_capacity=dict(FREE_A40))


def unmanaged_gpu(index: int = 2) -> GpuView:
    """Filtered out by the node config: only hami_mig_gpu_info / _healthy mention it."""
    return GpuView(index=index, uuid=f"GPU-{index:04d}", name="NVIDIA A100-SXM4-40GB", memory_mib=40960,
                   mig_mode="disabled", healthy=False, managed=False, reason="filtered by node config",
                   slots=(SlotView(0, "7g.40gb", True),),
                   instances=(inst("7g.40gb", 0, 8, 40192, Holder("x", "y", 0), gpu=index),))


def pending_gpu(index: int = 3) -> GpuView:
    """MIG mode change waiting for a reset; its one (free) instance counts as pending."""
    return GpuView(index=index, uuid=f"GPU-{index:04d}", name=A40, memory_mib=40960, mig_mode="pending",
                   healthy=True, managed=True, memory_slices=8, geometry_index=3,
                   slots=(SlotView(0, "7g.40gb", False),),
                   instances=(inst("7g.40gb", 0, 8, 40192, gpu=index),),
                   free_capacity={"1g.5gb": 7, "7g.40gb": 1})


def node(*gpus: GpuView, waiting: int = 2) -> NodeSnapshot:
    return NodeSnapshot(node=NODE, gpus=gpus, pods_waiting=waiting, registered=True, nvml_ok=True, api_ok=False,
                        taken_at=1.0)


def mixed_node() -> NodeSnapshot:
    return node(busy_gpu(0), idle_gpu(1), unmanaged_gpu(2), pending_gpu(3))


def full_node(gpus: int = 8) -> NodeSnapshot:
    """The benchmark's node: every GPU carved as 7x 1g.5gb, all but one instance in use."""
    views = []
    for g in range(gpus):
        insts = tuple(
            inst("1g.5gb", s, 1, 4864, Holder("team", f"job-{g}-{s}", 0) if s else None, gpu=g) for s in range(7))
        views.append(GpuView(
            index=g, uuid=f"GPU-{g:04d}", name=A40, memory_mib=40960, mig_mode="enabled", healthy=True,
            managed=True, memory_slices=8, geometry_index=0,
            slots=tuple(SlotView(s, "1g.5gb", s != 0) for s in range(7)), instances=insts,
            free_capacity={"1g.5gb": 1, "1g.10gb": 0, "2g.10gb": 0, "3g.20gb": 0, "4g.20gb": 0, "7g.40gb": 0},
            fragmentation=0.0))
    return node(*views)
