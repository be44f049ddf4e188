"""What one GPU model can hold: legal layouts, per-GPU and per-node feasibility of pod multisets.

A *pod vector* counts running pods per tier (see workload.py). A GPU can host a pod vector when
some legal layout (non-overlapping placements, max counts; `hami_mig.mig.layout`) has instances
that cover every pod: pods of tier k can use any instance of tier >= k, so by Hall's theorem on
nested sets the check is "for every k, pods of tier >= k <= instances of tier >= k".
A node of N GPUs can host a pod vector when it splits into N per-GPU-hostable vectors; that is
the re-pack oracle's admission test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.layout import for_model

from .workload import tier_of, tier_sizes

Vector = tuple[int, ...]


@dataclass(frozen=True)
class Hardware:
    """A GPU model with its tiers; `slices[k]` = memory slices of tier k's smallest profile."""

    model: GpuModel
    tiers: tuple[int, ...]
    slices: tuple[int, ...]

    def tier(self, gpumem: int) -> int | None:
        return tier_of(self.tiers, gpumem)

    def profile_tier(self, profile: Profile) -> int:
        return self.tiers.index(profile.memory_mib)


@cache
def hardware(model: GpuModel) -> Hardware:
    tiers = tier_sizes(model)
    slices = tuple(min(p.memory_slices for p in model.plannable if p.memory_mib == t) for t in tiers)
    return Hardware(model, tiers, slices)


@cache
def legal_layouts(model: GpuModel) -> tuple[tuple[str, ...], ...]:
    """Every multiset of plannable profiles with a legal placement on one GPU (the empty one too)."""
    lay = for_model(model)
    profiles = sorted(model.plannable, key=lambda p: (-p.memory_slices, p.name))
    ranges = [range(min(p.max_count, model.memory_slices // p.memory_slices) + 1) for p in profiles]
    found: list[tuple[str, ...]] = []
    for counts in itertools.product(*ranges):
        if sum(c * p.memory_slices for c, p in zip(counts, profiles, strict=True)) > model.memory_slices:
            continue
        names = tuple(p.name for c, p in zip(counts, profiles, strict=True) for _ in range(c))
        if lay.realizable(0, names):
            found.append(names)
    return tuple(found)


def maximal_layouts(model: GpuModel) -> tuple[tuple[str, ...], ...]:
    """Legal layouts to which no further instance can be added: the candidate static layouts."""
    legal = {tuple(sorted(layout)) for layout in legal_layouts(model)}
    names = [p.name for p in model.plannable]
    return tuple(
        layout for layout in legal_layouts(model)
        if layout and not any(tuple(sorted((*layout, n))) in legal for n in names)
    )


def instance_vector(hw: Hardware, profiles: Iterable[str]) -> Vector:
    counts = [0] * len(hw.tiers)
    for name in profiles:
        counts[hw.profile_tier(hw.model.profile(name))] += 1
    return tuple(counts)


def hostable(pods: Vector, instances: Vector) -> bool:
    """Hall's condition for nested tiers: the instances cover the pods one to one."""
    need = have = 0
    for k in reversed(range(len(pods))):
        need += pods[k]
        have += instances[k]
        if need > have:
            return False
    return True


@cache
def gpu_vectors(model: GpuModel) -> frozenset[Vector]:
    """Every pod vector one GPU can host (downward closed)."""
    hw = hardware(model)
    out: set[Vector] = set()
    for layout in legal_layouts(model):
        inst = instance_vector(hw, layout)
        for pods in itertools.product(*(range(sum(inst) + 1) for _ in inst)):
            if hostable(pods, inst):
                out.add(pods)
    return frozenset(out)


def maximal(vectors: Iterable[Vector]) -> list[Vector]:
    """The vectors not dominated by another one (componentwise <=)."""
    vs = sorted(set(vectors), key=sum, reverse=True)
    keep: list[Vector] = []
    for v in vs:
        if not any(all(a <= b for a, b in zip(v, k, strict=True)) for k in keep):
            keep.append(v)
    return keep


class NodeFeasibility:
    """Which pod vectors a node of `gpus` GPUs of one model can host with free re-packing.

    Memoised search: the vector fits on k GPUs when, for some maximal per-GPU vector g, what is
    left after g (clipped at 0) fits on k - 1 GPUs. Slices and the per-GPU count of each tier
    give quick necessary conditions.
    """

    def __init__(self, model: GpuModel, gpus: int) -> None:
        self.model = model
        self.gpus = gpus
        self.hw = hardware(model)
        self.per_gpu = maximal(gpu_vectors(model))
        self.cap = tuple(max(g[i] for g in self.per_gpu) for i in range(len(self.hw.tiers)))
        self._memo: dict[tuple[Vector, int], bool] = {}

    def fits(self, pods: Vector) -> bool:
        return self._fits(pods, self.gpus)

    def _fits(self, pods: Vector, k: int) -> bool:
        if not any(pods):
            return True
        if k == 0 or not self._plausible(pods, k):
            return False
        key = (pods, k)
        hit = self._memo.get(key)
        if hit is None:
            hit = any(
                self._fits(tuple(max(a - b, 0) for a, b in zip(pods, g, strict=True)), k - 1)
                for g in self.per_gpu
            )
            self._memo[key] = hit
        return hit

    def _plausible(self, pods: Vector, k: int) -> bool:
        used = sum(n * s for n, s in zip(pods, self.hw.slices, strict=True))
        if used > k * self.model.memory_slices:
            return False
        return all(n <= k * c for n, c in zip(pods, self.cap, strict=True))


def free_placement(model: GpuModel, in_use: Sequence[Sequence[tuple[str, int]]], gpumem: int) -> bool:
    """Whether some GPU has a legal free placement of a covering profile around its in-use instances.

    Free (not in-use) instances do not count: a reconfiguring scheme could destroy them.
    """
    lay = for_model(model)
    covering = [p for p in model.plannable if p.memory_mib >= gpumem]
    for instances in in_use:
        fixed = lay.occupied(instances)
        for p in covering:
            used = sum(1 for name, _ in instances if name == p.name)
            if used < p.max_count and lay.free_starts(p.name, fixed):
                return True
    return False
