"""The MIG state of a GPU as the planner sees it: which instances exist, where, and which are in use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import GpuModel, UnknownProfileError


@dataclass(frozen=True)
class Instance:
    """One GPU instance (with its full-size compute instance): profile and memory-slice placement.

    `in_use` is true when a pod holds it or the driver reports processes on it; the planner never
    destroys or moves such an instance. `uuid` is the MIG device UUID when the instance exists on
    hardware (None in offline plans).
    """

    profile: str
    start: int
    in_use: bool = False
    uuid: str | None = None

    def key(self) -> tuple[str, int]:
        return (self.profile, self.start)


@dataclass(frozen=True)
class GpuState:
    """One physical GPU: its identity, its profile table, and its current instances."""

    index: int
    uuid: str
    model: GpuModel
    instances: tuple[Instance, ...] = ()

    def occupied(self) -> set[int]:
        """Memory slices covered by some instance."""
        taken: set[int] = set()
        for inst in self.instances:
            taken.update(self.model.profile(inst.profile).slices(inst.start))
        return taken

    def in_use(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.in_use)

    def free(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if not i.in_use)

    def with_instances(self, instances: Iterable[Instance]) -> GpuState:
        return replace(self, instances=tuple(sorted(instances, key=lambda i: (i.start, i.profile))))


def check_layout(model: GpuModel, instances: Iterable[Instance], where: str = "instances") -> None:
    """Raise InputError unless the instances form a layout the hardware allows.

    Legal means: every profile exists on the model, every start is one of its placements, no two
    instances overlap, and no profile exceeds its max count.
    """
    owner: dict[int, str] = {}
    counts: dict[str, int] = {}
    for n, inst in enumerate(instances):
        field = f"{where}[{n}]"
        try:
            profile = model.profile(inst.profile)
        except UnknownProfileError as exc:
            raise InputError(f"{field}.profile", inst.profile, str(exc)) from None
        if inst.start not in profile.starts:
            raise InputError(
                f"{field}.start",
                inst.start,
                f"{profile.name} on {model.name} may start at {', '.join(map(str, profile.starts))}",
            )
        for s in profile.slices(inst.start):
            if s in owner:
                raise InputError(
                    f"{field}", f"{inst.profile}@{inst.start}", f"it overlaps {owner[s]} on memory slice {s}"
                )
            owner[s] = f"{inst.profile}@{inst.start}"
        counts[profile.name] = counts.get(profile.name, 0) + 1
        if counts[profile.name] > profile.max_count:
            raise InputError(
                f"{field}.profile",
                inst.profile,
                f"{model.name} allows at most {profile.max_count}x {profile.name}",
            )
