"""Capacity loss: how much room for future requests of each size a new instance takes away.

The best-fit planner's fragmentation score. A GPU's *capacity* for a size class (the profiles of
one real memory size: 1g.10gb; 1g.20gb and 2g.20gb; 3g.40gb and 4g.40gb; 7g.80gb on an
A100-80GB) is how many more instances of that size still fit around the in-use instances. Placing
an instance lowers some of these counts; the loss is the drop summed over the size classes, each
weighted by its memory slices, so that every slice of lost room counts the same whatever its size.
A 1g next to a busy 3g loses 1g, 2-slice and half-GPU room that the busy half had already lost
elsewhere, so it costs less than the same 1g on an idle GPU, which also loses the whole GPU.

Weighting the classes by the request sizes seen recently on the node (Fragmentation Gradient
Descent, USENIX ATC'23) was measured in `benchmarks/packing.py`'s simulator and changed nothing
beyond noise: on MIG's aligned power-of-two placements the per-class drops are nested, so almost
any positive weights rank the candidates alike (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.layout import Layouts, for_model, per_model

Counts = tuple[tuple[str, int], ...]  # in-use instances per profile, sorted by name


def in_use_counts(profiles: Iterable[str]) -> Counts:
    out: dict[str, int] = {}
    for name in profiles:
        out[name] = out.get(name, 0) + 1
    return tuple(sorted(out.items()))


class CapacityTable:
    """Per-size-class capacities of one model, memoised by occupied slices (and in-use counts if they bind)."""

    def __init__(self, model: GpuModel) -> None:
        self.model = model
        self.layouts: Layouts = for_model(model)
        sizes = sorted({p.memory_mib for p in model.plannable})
        self.classes: tuple[tuple[str, ...], ...] = tuple(
            tuple(p.name for p in model.plannable if p.memory_mib == mib) for mib in sizes
        )
        self.weights: tuple[int, ...] = tuple(
            min(model.profile(n).memory_slices for n in names) for names in self.classes
        )
        # Each in-use instance of a profile sits on one of its placements, so a maximum count equal to
        # the number of placements can never bind: the counts then drop out of the memo keys. When a
        # profile's placements are also pairwise disjoint (every MIG table so far), its room is simply
        # the number of its placements clear of the occupied slices.
        self.counts_bind = any(p.max_count < len(p.starts) for p in model.plannable)
        masks = {n: tuple(m for _s, m in self.layouts.placements(n)) for names in self.classes for n in names}
        self._disjoint = not self.counts_bind and all(_disjoint(ms) for ms in masks.values())
        self._masks = tuple(tuple(masks[n] for n in names) for names in self.classes)
        self._vectors: dict[tuple[int, Counts], tuple[int, ...]] = {}
        self._losses: dict[tuple[int, Counts, str, int], int] = {}

    def vector(self, occupied: int, counts: Counts = ()) -> tuple[int, ...]:
        """How many more instances of each size class fit (the best profile of the class)."""
        key = (occupied, counts if self.counts_bind else ())
        hit = self._vectors.get(key)
        if hit is None:
            if self._disjoint:
                hit = tuple(max(sum(1 for m in ms if not m & occupied) for ms in cls) for cls in self._masks)
            else:
                existing = dict(key[1])
                hit = tuple(max(self.layouts.capacity(occupied, n, existing.get(n, 0)) for n in names)
                            for names in self.classes)
            self._vectors[key] = hit
        return hit

    def loss(self, occupied: int, counts: Counts, profile: str, mask: int) -> int:
        """Slices of future room lost by creating `profile` at `mask` (in use) around `occupied`."""
        counts = counts if self.counts_bind else ()
        key = (occupied, counts, profile, mask)
        hit = self._losses.get(key)
        if hit is None:
            before = self.vector(occupied, counts)
            after = self.vector(occupied | mask, _plus(counts, profile) if self.counts_bind else ())
            hit = self._losses[key] = sum(w * (b - a) for w, b, a in zip(self.weights, before, after, strict=True))
        return hit


def _disjoint(masks: tuple[int, ...]) -> bool:
    seen = 0
    for m in masks:
        if m & seen:
            return False
        seen |= m
    return True


def _plus(counts: Counts, profile: str) -> Counts:
    out = dict(counts)
    out[profile] = out.get(profile, 0) + 1
    return tuple(sorted(out.items()))


_TABLES: dict[int, tuple[GpuModel, CapacityTable]] = {}


def capacity_table(model: GpuModel) -> CapacityTable:
    """The shared table of a model."""
    return per_model(_TABLES, model, CapacityTable)


def clear_caches() -> None:
    """Forget every table and its memos (a benchmark measuring cold decisions calls this)."""
    _TABLES.clear()
