"""hami-mig's planner as a scheme: the REAL `decide` + `apply_decision`, no copy of their logic.

A departure marks the pod's instance free (`in_use=False`); it stays on the GPU until some later
plan destroys it (hami-mig reuses or reshapes free instances lazily). Every admission is audited:
the plan must not touch in-use instances, must leave a legal layout, and must cover the request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import GeometryMode, Policy, apply_decision, decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance, check_layout

from .scheme import Admission, DecisionClock, Placement
from .workload import Pod


class PlannerError(AssertionError):
    """The planner produced a plan that breaks one of its invariants (a planner bug)."""


class PlannerScheme:
    """`hami-mig --policy <policy> --geometries <mode>` on one node."""

    def __init__(
        self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries, policy: Policy, mode: GeometryMode
    ) -> None:
        self.name = name
        self.model = model
        self.policy: Policy = policy
        self.mode: GeometryMode = mode
        self._geometries = geometries
        self.gpus: list[GpuState] = [GpuState(i, f"GPU-{i}", model) for i in range(gpus)]
        self.holder: dict[int, tuple[int, str, int]] = {}
        self.clock = DecisionClock()
        self.tier_exact = True

    def lookup(self, _gpu: GpuState) -> GpuGeometries:
        return self._geometries

    def plan(self, gpus: Sequence[GpuState], gpumem: int) -> Decision:
        """The planner's decision, timed into `clock`."""
        t0 = time.perf_counter()
        decision = decide(gpus, Request(memory_mib=gpumem), self.lookup, self.policy, self.mode)
        self.clock.add(time.perf_counter() - t0)
        return decision

    def admit(self, pod: Pod) -> Admission | None:
        decision = self.plan(self.gpus, pod.gpumem)
        return self.carry_out(pod, decision) if decision.fits else None

    def carry_out(self, pod: Pod, decision: Decision) -> Admission:
        after = apply_decision(self.gpus, decision)
        audit(self.gpus, after, decision, pod.gpumem)
        self.gpus = after
        a = decision.allocations[0]
        self.holder[pod.id] = (a.gpu_index, a.profile, a.start)
        profile = self.model.profile(a.profile)
        return Admission(a.gpu_index, a.profile, profile.memory_slices, profile.memory_mib, len(decision.operations))

    def release(self, pod: Pod) -> None:
        index, profile, start = self.holder.pop(pod.id)
        gpu = self.gpus[index]
        self.gpus[index] = gpu.with_instances(
            Instance(i.profile, i.start, False, i.uuid) if i.key() == (profile, start) else i for i in gpu.instances
        )

    def in_use(self) -> list[list[Placement]]:
        return [[i.key() for i in gpu.in_use()] for gpu in self.gpus]


def audit(before: Sequence[GpuState], after: Sequence[GpuState], decision: Decision, gpumem: int) -> None:
    """Raise PlannerError when a plan touches an in-use instance, breaks the layout or undersizes."""
    for old, new in zip(before, after, strict=True):
        gone = {i.key() for i in old.in_use()} - {i.key() for i in new.in_use()}
        if gone:
            raise PlannerError(f"GPU {old.index}: plan {decision.operations} removed in-use {sorted(gone)}")
        try:
            check_layout(new.model, new.instances, f"gpu[{new.index}]")
        except ValueError as exc:
            raise PlannerError(f"GPU {old.index}: illegal layout after {decision.operations}: {exc}") from None
    for a in decision.allocations:
        if (a.profile, a.start) in {i.key() for i in before[a.gpu_index].in_use()}:
            raise PlannerError(f"allocation {a} double-books an in-use instance")
        if a.memory_mib < gpumem:
            raise PlannerError(f"allocation {a} is smaller than the {gpumem} MiB asked")
