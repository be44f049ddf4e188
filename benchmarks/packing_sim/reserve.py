"""Stretch: a reservation policy wrapped around the real planner (best-fit, any geometry).

When a whole-GPU pod is refused, one GPU running at most one pod (the fewest pods, then the fewest
in-use memory slices) is held "draining": smaller pods are planned on the other GPUs only, so the
held GPU empties when its pod ends. The hold is lifted when a whole-GPU pod is admitted. The planner
itself is unchanged: the wrapper only narrows the GPU list it hands to `decide`.
"""

from __future__ import annotations

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries

from .planned import PlannerScheme
from .scheme import Admission
from .workload import Pod

DRAIN_MAX_PODS = 1


class ReservingScheme(PlannerScheme):
    """best-fit/any plus one draining GPU held for the next whole-GPU pod."""

    def __init__(self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries) -> None:
        super().__init__(name, model, gpus, geometries, "best-fit", "any")
        below = [p.memory_mib for p in model.plannable if p.memory_mib < model.largest.memory_mib]
        self.whole_above = max(below, default=0)  # a request above this needs the largest profile
        self.held: int | None = None

    def admit(self, pod: Pod) -> Admission | None:
        whole = pod.gpumem > self.whole_above
        gpus = self.gpus if whole or self.held is None else [g for g in self.gpus if g.index != self.held]
        decision = self.plan(gpus, pod.gpumem)
        if decision.fits:
            if whole:
                self.held = None
            return self.carry_out(pod, decision)
        if whole and self.held is None:
            self.held = self._drain_candidate()
        return None

    def _drain_candidate(self) -> int | None:
        """A GPU with at most one running pod (lifetimes are memoryless: fewer pods drain sooner), then slices.

        A GPU already running a whole-GPU pod is not a candidate (draining it frees nothing); holding a
        GPU with more pods was measured to cost more small pods for no more whole-GPU admissions.
        """
        largest = self.model.largest.name
        def busy(index: int) -> tuple[int, int, int]:
            held = self.gpus[index].in_use()
            return len(held), sum(self.model.profile(i.profile).memory_slices for i in held), index
        candidates = [i for i, g in enumerate(self.gpus)
                      if len(g.in_use()) <= DRAIN_MAX_PODS and all(x.profile != largest for x in g.in_use())]
        return min(candidates, key=busy, default=None)
