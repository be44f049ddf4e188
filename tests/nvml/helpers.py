"""Small helpers shared by the nvml tests: layouts of a device and the operations between two layouts."""

from __future__ import annotations

from collections.abc import Iterable

from hami_mig.mig.plan import Operation
from hami_mig.nvml import GpuDevice


def layout(dev: GpuDevice) -> set[tuple[str, int]]:
    return {(i.profile, i.start) for i in dev.instances}


def ops_between(gpu: int, current: Iterable[tuple[str, int]], target: Iterable[tuple[str, int]]) -> list[Operation]:
    """Destroy what the target drops, then create what it adds (the order a planner emits)."""
    cur, tgt = set(current), set(target)
    out = [Operation("destroy", gpu, p, s) for p, s in sorted(cur - tgt, key=lambda x: (x[1], x[0]))]
    out += [Operation("create", gpu, p, s) for p, s in sorted(tgt - cur, key=lambda x: (x[1], x[0]))]
    return out
