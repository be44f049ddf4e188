"""The interface every sharing scheme offers the simulator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .workload import Pod

Placement = tuple[str, int]  # (profile, start memory slice)


@dataclass(frozen=True)
class Admission:
    """What a scheme gave an admitted pod.

    `ops` counts mutating NVML calls (instance creates and destroys) the admission needed;
    `instance_mib` is the instance's REAL memory (below the request = an undersized admission).
    """

    gpu: int
    profile: str
    slices: int
    instance_mib: int
    ops: int


@dataclass
class DecisionClock:
    """Wall time spent deciding (for the planner: inside `decide` only), over every attempt."""

    decisions: int = 0
    seconds: float = 0.0

    def add(self, seconds: float) -> None:
        self.decisions += 1
        self.seconds += seconds


class Scheme(Protocol):
    """A sharing scheme: admits pods at once or refuses them; no pod is ever moved."""

    name: str
    clock: DecisionClock
    # True when the answer depends on a request only through its tier (REAL-memory covering set);
    # lets the queued simulation skip a whole tier after one failure in a retry round.
    tier_exact: bool

    def admit(self, pod: Pod) -> Admission | None:
        """Place the pod now, or return None (refused in this state)."""
        ...

    def release(self, pod: Pod) -> None:
        """The pod ended: give back what it held."""
        ...

    def in_use(self) -> Sequence[Sequence[Placement]] | None:
        """Per GPU, the placements held by running pods; None when the scheme has no placements."""
        ...
