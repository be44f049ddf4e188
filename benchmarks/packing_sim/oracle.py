"""The re-pack oracle: a CEILING, not a scheme anyone can run without live migration.

At each decision it may move and resize every running instance for free. It admits a pod when the
running pods plus the new one (each as its smallest covering tier) have some legal layout across
the node's GPUs (`hardware.NodeFeasibility`, built on `hami_mig.mig.layout`). It never refuses
a pod some placement could hold, so its admission rate is what migration would add at most
(with admission still greedy in arrival order; see bound.py for an offline bound).
"""

from __future__ import annotations

import time

from hami_mig.mig.catalogue import GpuModel

from .hardware import NodeFeasibility, hardware
from .scheme import Admission, DecisionClock
from .workload import Pod


class RepackOracle:
    """Admit whenever some re-packing of all running pods makes room."""

    def __init__(self, name: str, model: GpuModel, gpus: int) -> None:
        self.name = name
        self.hw = hardware(model)
        self.feasible = NodeFeasibility(model, gpus)
        self.counts = [0] * len(self.hw.tiers)
        self.tier: dict[int, int] = {}
        self.clock = DecisionClock()
        self.tier_exact = True

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        k = self.hw.tier(pod.gpumem)
        want = list(self.counts)
        if k is not None:
            want[k] += 1
        ok = k is not None and self.feasible.fits(tuple(want))
        self.clock.add(time.perf_counter() - t0)
        if not ok or k is None:
            return None
        self.counts = want
        self.tier[pod.id] = k
        return Admission(-1, f"tier {k}", self.hw.slices[k], self.hw.tiers[k], 0)

    def release(self, pod: Pod) -> None:
        self.counts[self.tier.pop(pod.id)] -= 1

    def in_use(self) -> None:
        return None
