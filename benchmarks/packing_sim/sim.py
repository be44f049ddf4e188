"""The event loop and its accounting: one scheme, one trace, one node.

Events are processed in time order; at equal times departures come before arrivals (a freed
instance is usable by a pod arriving at that instant). The run ends at the last arrival.

- dropped (default): a refused pod is gone. Its refusal is classified, in the state it met:
  `free`  some GPU had a legal free placement of a covering profile around the in-use instances
          (the scheme chose not to use it: a fixed layout, a locked geometry, the config's list);
  `move`  no such placement, but re-packing the running pods (migration) would make room;
  `none`  not even re-packing helps: the node is full for this pod.
- queued: a refused pod stays Pending (FIFO) and is retried after every departure; it runs its
  full duration from its admission. Within one retry round, a pod is skipped when a pod of the same
  tier and no more memory already failed (every scheme here is monotone in memory within a tier),
  or, for schemes whose answer depends on the tier alone (`tier_exact`), any pod of that tier.

Only pods arriving at or after `warmup` are measured; utilization integrates over [warmup, end].
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from hami_mig.mig.catalogue import GpuModel

from .hardware import NodeFeasibility, free_placement, hardware
from .scheme import Admission, Scheme
from .workload import Pod

REFUSALS = ("free", "move", "none")


@dataclass
class Outcome:
    """What happened to one pod."""

    pod: Pod
    tier: int | None
    admission: Admission | None = None
    admitted_at: float | None = None
    refusal: str | None = None  # class of its first refusal

    @property
    def pending(self) -> float | None:
        return None if self.admitted_at is None else self.admitted_at - self.pod.arrival


@dataclass
class SimResult:
    """Every measured pod's outcome plus the time integrals the summary needs."""

    scheme: str
    queued: bool
    gpus: int
    memory_slices: int
    start: float
    end: float
    outcomes: list[Outcome]
    slice_time: float = 0.0  # integral of memory slices held by running pods over [start, end]
    decisions: int = 0  # admit attempts over the whole run (retries included)
    decide_s: float = 0.0  # their total decision time


class Simulation:
    """One run's mutable state: the clock, slices held, running pods per tier, queue, departures."""

    def __init__(
        self, scheme: Scheme, model: GpuModel, gpus: int, queued: bool = False, warmup: float = 0.0,
        classify: bool = True, feasibility: NodeFeasibility | None = None,
    ) -> None:
        self.scheme = scheme
        self.model = model
        self.gpus = gpus
        self.queued = queued
        self.warmup = warmup
        self.classify = classify
        self.hw = hardware(model)
        self.feasibility = feasibility if feasibility is not None or not classify else NodeFeasibility(model, gpus)
        self.now = 0.0
        self.held = 0  # memory slices held by running pods
        self.slice_time = 0.0  # integral of `held` over [warmup, now]
        self.counts = [0] * len(self.hw.tiers)  # running pods per tier
        self.pending: list[Outcome] = []
        self.departures: list[tuple[float, int, Outcome]] = []

    def run(self, pods: Sequence[Pod]) -> SimResult:
        order = sorted(pods, key=lambda p: (p.arrival, p.id))
        end = order[-1].arrival if order else 0.0
        outcomes: list[Outcome] = []
        for pod in order:
            self._depart_until(pod.arrival)
            self._advance(pod.arrival)
            outcome = Outcome(pod, self.hw.tier(pod.gpumem))
            self._arrive(outcome)
            if pod.arrival >= self.warmup:
                outcomes.append(outcome)
        self._advance(end)
        clock = self.scheme.clock
        return SimResult(self.scheme.name, self.queued, self.gpus, self.gpus * self.model.memory_slices,
                         self.warmup, end, outcomes, self.slice_time, clock.decisions, clock.seconds)

    def _advance(self, t: float) -> None:
        lo = max(self.now, self.warmup)
        if t > lo:
            self.slice_time += self.held * (t - lo)
        self.now = max(self.now, t)

    def _depart_until(self, t: float) -> None:
        while self.departures and self.departures[0][0] <= t:
            when, _id, outcome = heapq.heappop(self.departures)
            self._advance(when)
            self._release(outcome)
            if self.queued:
                self._retry()

    def _arrive(self, outcome: Outcome) -> None:
        if self._try(outcome):
            return
        if self.classify:
            outcome.refusal = self._classify(outcome)
        if self.queued:
            self.pending.append(outcome)

    def _try(self, outcome: Outcome) -> bool:
        admission = self.scheme.admit(outcome.pod)
        if admission is None:
            return False
        outcome.admission = admission
        outcome.admitted_at = self.now
        self.held += admission.slices
        if outcome.tier is not None:
            self.counts[outcome.tier] += 1
        heapq.heappush(self.departures, (self.now + outcome.pod.duration, outcome.pod.id, outcome))
        return True

    def _release(self, outcome: Outcome) -> None:
        self.scheme.release(outcome.pod)
        assert outcome.admission is not None
        self.held -= outcome.admission.slices
        if outcome.tier is not None:
            self.counts[outcome.tier] -= 1

    def _retry(self) -> None:
        failed: dict[int | None, int] = {}
        exact = self.scheme.tier_exact
        still: list[Outcome] = []
        for outcome in self.pending:
            floor = failed.get(outcome.tier)
            if floor is not None and (exact or outcome.pod.gpumem >= floor):
                still.append(outcome)
            elif not self._try(outcome):
                failed[outcome.tier] = min(outcome.pod.gpumem, floor or outcome.pod.gpumem)
                still.append(outcome)
        self.pending = still

    def _classify(self, outcome: Outcome) -> str:
        if outcome.tier is None:
            return "none"
        in_use = self.scheme.in_use()
        if in_use is not None and free_placement(self.model, in_use, outcome.pod.gpumem):
            return "free"
        want = list(self.counts)
        want[outcome.tier] += 1
        assert self.feasibility is not None
        return "move" if self.feasibility.fits(tuple(want)) else "none"


def simulate(
    scheme: Scheme, pods: Sequence[Pod], model: GpuModel, gpus: int, *, queued: bool = False,
    warmup: float = 0.0, classify: bool = True, feasibility: NodeFeasibility | None = None,
) -> SimResult:
    """Run one scheme over one trace (see the module docstring for the rules)."""
    sim = Simulation(scheme, model, gpus, queued, warmup, classify, feasibility)
    return sim.run(pods)
