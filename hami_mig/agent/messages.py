"""The one-line Event messages that say what an Allocate chose and why (`kubectl describe pod` shows them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hami_mig.agent.allocate import Outcome


def _why(outcome: Outcome, policy: str) -> str:
    a = outcome.decision.allocations[0] if outcome.decision.allocations else None
    if outcome.target.mode == "hami":
        return "the HAMi scheduler chose this geometry slot"
    if a is not None and a.geometry_index is None:
        return ("best fit over every layout the hardware allows (smallest covering profile, least room lost)"
                if policy == "best-fit" else "first GPU that fits, over every layout the hardware allows")
    if policy == "best-fit":
        return "best fit over the configured geometries (smallest covering profile, least room lost)"
    return "first configured geometry (knownMigGeometries) that fits, as HAMi walks them"


def allocated_message(outcome: Outcome, policy: str = "hami") -> str:
    """`container 0 asks 1 instance of 15000 MiB: GPU 0 (GPU-…): created 2g.20gb@4 (19968 MiB, geometry 1 slot 1)
    after destroying free 1g.10gb@4 (MIG-…) -> MIG-…; why: …`"""
    decision = outcome.decision
    destroyed = outcome.applied.destroyed if outcome.applied is not None else ()
    parts: list[str] = []
    for a, uuid in zip(decision.allocations, outcome.mig_uuids, strict=False):
        where = f"geometry {a.geometry_index} slot {a.slot}" if a.geometry_index is not None else "any layout"
        action = "reused the free" if a.reuse else "created"
        gone = [f"{s.op.profile}@{s.op.start}" + (f" ({s.instance.mig_uuid})" if s.instance and s.instance.mig_uuid
                                                  else "")
                for s in destroyed if s.op.gpu_index == a.gpu_index]
        after = f" after destroying free {', '.join(gone)}" if gone else ""
        parts.append(f"GPU {a.gpu_index} ({a.gpu_uuid}): {action} {a.profile}@{a.start} ({a.memory_mib} MiB, "
                     f"{where}){after} -> {uuid}")
    asks = f" asks {outcome.request.describe()}" if outcome.request is not None else ""
    ops = "no MIG change" if not decision.operations else f"{len(decision.operations)} NVML operation(s)"
    return (f"container {outcome.target.container}{asks}: {'; '.join(parts)}; why: {_why(outcome, policy)}; "
            f"{ops} in {outcome.seconds * 1000:.0f} ms")
