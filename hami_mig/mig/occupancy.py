"""How full a GPU is: its current geometry and slot numbering, free capacity, fragmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hami_mig.mig.geometry import ResolvedGeometry
from hami_mig.mig.layout import for_model
from hami_mig.mig.state import GpuState, Instance


@dataclass(frozen=True)
class SlotUse:
    """One numbered slot of the GPU's current layout; `instance` is None for an empty slot."""

    slot: int
    profile: str
    instance: Instance | None

    @property
    def in_use(self) -> bool:
        return self.instance is not None and self.instance.in_use

    @property
    def mig_name(self) -> str:
        """HAMi's `migname` label: `<profile>-<slot>`."""
        return f"{self.profile}-{self.slot}"


@dataclass(frozen=True)
class Occupancy:
    """The GPU's layout as slots: of a configured geometry when one matches, else by placement order."""

    geometry_index: int | None
    slots: tuple[SlotUse, ...]


def current_geometry(gpu: GpuState, geometries: Sequence[ResolvedGeometry]) -> Occupancy:
    """Number the GPU's instances the way HAMi's `nodeGPUMigInstance` does.

    The first configured geometry that contains every existing instance (in use or free) at its
    place, with the rest of the geometry still placeable, is the current geometry: each instance
    takes the first slot of its profile in slot order (instances sorted by start). A GPU without
    instances has no geometry and no slots (HAMi emits nothing). A layout that no geometry
    contains (`--geometries any`) is numbered by placement start order.
    """
    if not gpu.instances:
        return Occupancy(None, ())
    lay = for_model(gpu.model)
    ordered = sorted(gpu.instances, key=lambda i: (i.start, i.profile))
    occupied = lay.occupied(i.key() for i in ordered)
    for geo in geometries:
        pending: dict[str, list[Instance]] = {}
        for each in ordered:
            pending.setdefault(each.profile, []).append(each)
        slots: list[SlotUse] = []
        rest: list[str] = []
        for s in geo.slots:
            queue = pending.get(s.profile.name)
            inst: Instance | None = queue.pop(0) if queue else None
            slots.append(SlotUse(s.index, s.profile.name, inst))
            if inst is None:
                rest.append(s.profile.name)
        if any(pending.values()):
            continue
        if lay.realizable(occupied, rest):
            return Occupancy(geo.index, tuple(slots))
    return Occupancy(None, tuple(SlotUse(n, i.profile, i) for n, i in enumerate(ordered)))


def free_capacity(gpu: GpuState) -> dict[str, int]:
    """How many more of each plannable profile could be created now without touching in-use ones."""
    lay = for_model(gpu.model)
    in_use = gpu.in_use()
    fixed = lay.occupied(i.key() for i in in_use)
    return {
        p.name: lay.capacity(fixed, p.name, sum(1 for i in in_use if i.profile == p.name))
        for p in gpu.model.plannable
    }


def fragmentation(gpu: GpuState) -> float:
    """1 - (largest instance still placeable / memory slices not held by in-use instances), in [0, 1].

    0 means the free memory can be carved as one instance; it rises as free slices scatter.
    """
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    free_slices = gpu.model.memory_slices - bin(fixed).count("1")
    if free_slices <= 0:
        return 0.0
    largest = max((p.memory_slices for p in gpu.model.plannable if lay.free_starts(p.name, fixed)), default=0)
    return round(1.0 - min(largest, free_slices) / free_slices, 4)
