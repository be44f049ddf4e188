"""Why an allocation carved a new instance while a free one of the same profile was there, in one line.

Computed from the node as it was before the step, so the line stays true whatever the planner decides:
it is printed only when that happens, and says what the policy gained by not reusing.
"""

from __future__ import annotations

from collections.abc import Sequence

from hami_mig.mig.layout import for_model
from hami_mig.mig.plan import Allocation
from hami_mig.mig.state import GpuState, Instance

Taken = dict[int, list[tuple[str, int]]]  # GPU index -> (profile, start) placed on top of the in-use instances


def room(gpus: Sequence[GpuState], taken: Taken) -> dict[str, int]:
    """How many more instances of each profile the GPUs in `taken` could still get, counted per profile."""
    out: dict[str, int] = {}
    for gpu in gpus:
        if gpu.index not in taken:
            continue
        lay = for_model(gpu.model)
        held = [i.key() for i in gpu.in_use()] + taken[gpu.index]
        fixed = lay.occupied(held)
        for p in gpu.model.plannable:
            existing = sum(1 for name, _ in held if name == p.name)
            out[p.name] = out.get(p.name, 0) + lay.capacity(fixed, p.name, existing)
    return out


def _largest_gain(gpus: Sequence[GpuState], chosen: dict[str, int], other: dict[str, int]) -> str | None:
    profiles = {p.name: p for g in gpus for p in g.model.plannable}
    order = sorted(profiles.values(), key=lambda p: (-p.memory_slices, -p.compute_slices))
    for p in order:
        if chosen.get(p.name, 0) > other.get(p.name, 0):
            return p.name
    return None


def why_not_reused(gpus: Sequence[GpuState], allocation: Allocation, policy: str) -> str | None:
    """One line when `allocation` created an instance although a free one of its profile existed, else None."""
    if allocation.reuse:
        return None
    free: list[tuple[GpuState, Instance]] = [(g, i) for g in gpus for i in g.free() if i.profile == allocation.profile]
    if not free:
        return None
    gpu, inst = free[0]
    where = "" if gpu.index == allocation.gpu_index else f" on GPU {gpu.index}"
    head = f"why not the free {inst.profile}@{inst.start}{where}: "
    if policy != "best-fit":
        slot = "" if allocation.geometry_index is None else (
            f" (here geometry {allocation.geometry_index} slot {allocation.slot})")
        return head + f"HAMi's rule takes the first configured geometry and free slot that fit{slot}"
    chosen = room(gpus, {allocation.gpu_index: [(allocation.profile, allocation.start)]}
                  | ({} if gpu.index == allocation.gpu_index else {gpu.index: []}))
    reused = room(gpus, {gpu.index: [inst.key()]} | (
        {} if gpu.index == allocation.gpu_index else {allocation.gpu_index: []}))
    gain = _largest_gain(gpus, chosen, reused)
    if gain is None:
        return head + "best-fit scored the new placement higher"
    return (head + f"best-fit puts room before NVML operations: {allocation.profile}@{allocation.start} leaves "
            f"room for {chosen[gain]}x {gain}, reusing would leave {reused[gain]}x; the free one waits for a later "
            "pod, or is destroyed when a larger instance needs its slice")
