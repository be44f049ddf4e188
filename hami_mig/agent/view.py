"""Builds the NodeSnapshot (what metrics and the demo show) from one inventory reading."""

from __future__ import annotations

import time

from hami_mig.agent.inventory import GeometryCache, Inventory
from hami_mig.agent.snapshot import GpuView, InstanceView, NodeSnapshot, SlotView
from hami_mig.mig.occupancy import current_geometry, fragmentation, free_capacity
from hami_mig.nvml import GpuDevice


def _instances(dev: GpuDevice, inv: Inventory) -> tuple[InstanceView, ...]:
    state = inv.state_by_uuid(dev.uuid)
    in_use = {i.key(): i.in_use for i in state.instances} if state else {}
    out: list[InstanceView] = []
    for hw in dev.instances:
        held = inv.held.get(hw.mig_uuid or "")
        procs = hw.processes
        out.append(InstanceView(
            profile=hw.profile, start=hw.start, size=hw.size, memory_mib=hw.memory_mib,
            state="in_use" if in_use.get((hw.profile, hw.start), True) else "free",
            mig_uuid=hw.mig_uuid, gi_id=hw.gi_id, ci_id=hw.ci_id,
            holder=held[0] if held else None, processes=None if procs is None else len(procs),
        ))
    return tuple(out)


def gpu_view(dev: GpuDevice, inv: Inventory, geos: GeometryCache) -> GpuView:
    state = inv.state_by_uuid(dev.uuid)
    reason = inv.unmanaged.get(dev.index, "")
    base = dict(index=dev.index, uuid=dev.uuid, name=dev.name, memory_mib=dev.memory_mib, mig_mode=dev.mig_mode,
                healthy=dev.mig_mode != "unknown", numa_node=dev.numa_node, instances=_instances(dev, inv))
    if state is None:
        return GpuView(managed=False, reason=reason or dev.message, **base)  # type: ignore[arg-type]
    occ = current_geometry(state, geos(state).geometries)
    return GpuView(
        managed=True, memory_slices=state.model.memory_slices, geometry_index=occ.geometry_index,
        slots=tuple(SlotView(s.slot, s.profile, s.in_use) for s in occ.slots),
        free_capacity=free_capacity(state), fragmentation=fragmentation(state), **base,  # type: ignore[arg-type]
    )


def build_snapshot(node: str, inv: Inventory, geos: GeometryCache, *, pods_waiting: int, registered: bool,
                   api_ok: bool) -> NodeSnapshot:
    return NodeSnapshot(
        node=node, gpus=tuple(gpu_view(d, inv, geos) for d in inv.devices), pods_waiting=pods_waiting,
        registered=registered, nvml_ok=True, api_ok=api_ok, taken_at=time.time(),
    )
