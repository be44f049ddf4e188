"""Why an allocation carved a new instance while a free one of the same profile was there, in one line.

Computed from the node as it was before the step, with the planner's own score terms, so the line stays true
whatever the planner decides: it is printed only when that happens, and says what the policy gained by not
reusing.
"""

from __future__ import annotations

from collections.abc import Sequence

from hami_mig.mig.capacity import capacity_table, in_use_counts
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.plan import Allocation
from hami_mig.mig.state import GpuState, Instance


def room_lost(gpu: GpuState, profile: str, start: int) -> int:
    """The planner's fragmentation term (`hami_mig.mig.capacity`): slices of room lost by `profile`@`start`."""
    table = capacity_table(gpu.model)
    fixed = for_model(gpu.model).occupied(i.key() for i in gpu.in_use())
    counts = in_use_counts(i.profile for i in gpu.in_use()) if table.counts_bind else ()
    return table.loss(fixed, counts, profile, profile_mask(gpu.model.profile(profile), start))


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
    if allocation.geometry_index is not None and policy != "best-fit":
        return head + (f"HAMi's rule takes the first configured geometry and free slot that fit (here geometry "
                       f"{allocation.geometry_index} slot {allocation.slot})")
    chosen_gpu = next(g for g in gpus if g.index == allocation.gpu_index)
    new = room_lost(chosen_gpu, allocation.profile, allocation.start)
    reuse = room_lost(gpu, inst.profile, inst.start)
    if new >= reuse:
        return head + "the planner scored the new placement higher"
    return (head + f"the planner puts room before NVML operations: {allocation.profile}@{allocation.start} takes "
            f"{new} slice(s) of room from later pods, reusing would take {reuse}; the free one waits for a later "
            "pod, or is destroyed when a larger instance needs its slices")
