"""Placement arithmetic on memory slices: can these profiles still be placed around these instances?

Slices are bits of an int; a placement is a mask. Everything here is cached per model, because
the planner asks the same small questions many times per decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

from hami_mig.mig.catalogue import GpuModel, Profile


def mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def profile_mask(profile: Profile, start: int) -> int:
    return mask(start, profile.memory_slices)


class Layouts:
    """Placement questions for one model; `for_model` hands out one shared instance per model."""

    def __init__(self, model: GpuModel) -> None:
        self.model = model
        self.full = mask(0, model.memory_slices)
        self._masks: dict[str, tuple[tuple[int, int], ...]] = {
            p.name: tuple((s, profile_mask(p, s)) for s in p.starts) for p in model.profiles
        }
        self._size = {p.name: p.memory_slices for p in model.profiles}

    def placements(self, profile: str) -> tuple[tuple[int, int], ...]:
        """(start, mask) of every placement the hardware allows for the profile."""
        return self._masks[profile]

    def occupied(self, instances: Iterable[tuple[str, int]]) -> int:
        taken = 0
        for name, start in instances:
            taken |= mask(start, self._size[name])
        return taken

    def free_starts(self, profile: str, occupied: int) -> list[int]:
        return [s for s, m in self._masks[profile] if not m & occupied]

    def realizable(self, occupied: int, profiles: Sequence[str]) -> bool:
        """True when every profile in the list can be placed without overlap around `occupied`."""
        return self.realizable_sorted(occupied, self.sort_key(profiles))

    def _search_rank(self, profile: str) -> tuple[int, str]:
        """Largest profiles first (fewest branches), then by name so equal lists share one memo entry."""
        return (-self._size[profile], profile)

    def sort_key(self, profiles: Sequence[str]) -> tuple[str, ...]:
        """The profiles in the order the placement search takes them (largest first), for `realizable_sorted`."""
        return tuple(sorted(profiles, key=self._search_rank))

    def realizable_sorted(self, occupied: int, key: tuple[str, ...]) -> bool:
        """`realizable` for profiles already put in order by `sort_key` (a hot loop sorts them once)."""
        return self._assign_sorted(occupied, key) is not None

    def assign(self, occupied: int, profiles: Sequence[str]) -> tuple[int, ...] | None:
        """Starts for the profiles (in the given order), or None when no non-overlapping assignment exists."""
        order = sorted(range(len(profiles)), key=lambda i: self._search_rank(profiles[i]))
        key = tuple(profiles[i] for i in order)
        found = self._assign_sorted(occupied, key)
        if found is None:
            return None
        starts = [0] * len(profiles)
        for pos, i in enumerate(order):
            starts[i] = found[pos]
        return tuple(starts)

    @lru_cache(maxsize=65536)  # noqa: B019 - one Layouts per model, kept for the process' life
    def _assign_sorted(self, occupied: int, profiles: tuple[str, ...]) -> tuple[int, ...] | None:
        if not profiles:
            return ()
        head, rest = profiles[0], profiles[1:]
        for start, m in self._masks[head]:
            if m & occupied:
                continue
            tail = self._assign_sorted(occupied | m, rest)
            if tail is not None:
                return (start, *tail)
        return None

    def capacity(self, occupied: int, profile: str, existing: int = 0) -> int:
        """How many more instances of `profile` fit around `occupied`, given `existing` ones kept."""
        count = 0
        taken = occupied
        limit = self.model.profile(profile).max_count - existing
        # Placements of one profile are aligned and equal-sized, so greedy lowest-start is optimal.
        for _start, m in self._masks[profile]:
            if count >= limit:
                break
            if not m & taken:
                taken |= m
                count += 1
        return count


T = TypeVar("T")
_CACHE: dict[int, tuple[GpuModel, Layouts]] = {}


def per_model(cache: dict[int, tuple[GpuModel, T]], model: GpuModel, build: Callable[[GpuModel], T]) -> T:
    """The object `build` made for this model, made once (keyed by identity; the model is kept alive with it)."""
    hit = cache.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    made = build(model)
    cache[id(model)] = (model, made)
    return made


def for_model(model: GpuModel) -> Layouts:
    """The shared Layouts of a model."""
    return per_model(_CACHE, model, Layouts)
