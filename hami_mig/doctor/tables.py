"""NVML's profile table against the packaged catalogue, and the nearest known model or geometry entry."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from hami_mig.mig.catalogue import Catalogue, GpuModel, Profile, normalise_model_name
from hami_mig.mig.geometry import DeviceConfig


@dataclass(frozen=True)
class TableDiff:
    """How the driver's table differs from the catalogue's (profiles matched by NVML profile enum)."""

    missing: tuple[str, ...]  # in the catalogue, not offered by the driver
    extra: tuple[str, ...]  # offered by the driver, not in the catalogue
    changed: tuple[str, ...]  # "2g.20gb: max_count 3 -> 2"
    memory_drift_pct: dict[str, float]  # profile -> (NVML - catalogue) / catalogue * 100

    @property
    def max_drift_pct(self) -> float:
        return max((abs(v) for v in self.memory_drift_pct.values()), default=0.0)

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra or self.changed) and self.max_drift_pct == 0.0

    def describe(self) -> str:
        parts = [f"{name} memory {pct:+.1f}%" for name, pct in self.memory_drift_pct.items() if pct]
        parts += list(self.changed)
        parts += [f"{name} not offered by the driver" for name in self.missing]
        parts += [f"{name} offered by the driver, not in the catalogue" for name in self.extra]
        return "; ".join(parts)


def _fields(p: Profile) -> dict[str, object]:
    return {"name": p.name, "compute_slices": p.compute_slices, "memory_slices": p.memory_slices,
            "max_count": p.max_count, "placements": list(p.starts)}


def compare(found: GpuModel, known: GpuModel) -> TableDiff:
    """What the driver reports (`found`) against the catalogue model (`known`)."""
    mine = {p.nvml_profile_id: p for p in found.profiles}
    theirs = {p.nvml_profile_id: p for p in known.profiles}
    changed: list[str] = []
    drift: dict[str, float] = {}
    for enum in sorted(set(mine) & set(theirs)):
        got, want = mine[enum], theirs[enum]
        drift[want.name] = round((got.memory_mib - want.memory_mib) * 100.0 / want.memory_mib, 2)
        a, b = _fields(got), _fields(want)
        changed += [f"{want.name}: {key} {b[key]} -> {a[key]}" for key in a if a[key] != b[key]]
    return TableDiff(
        missing=tuple(theirs[e].name for e in sorted(set(theirs) - set(mine))),
        extra=tuple(mine[e].name for e in sorted(set(mine) - set(theirs))),
        changed=tuple(changed),
        memory_drift_pct=drift,
    )


def nearest_model(found: GpuModel, catalogue: Catalogue) -> GpuModel | None:
    """The catalogue model whose table is most like the driver's: most equal profiles, then closest memory."""
    def score(known: GpuModel) -> tuple[int, float]:
        diff = compare(found, known)
        equal = len(known.profiles) - len(diff.missing) - len({c.split(":", 1)[0] for c in diff.changed})
        return (-equal, sum(abs(v) for v in diff.memory_drift_pct.values()) + 100.0 * len(diff.missing))

    return min(catalogue.models, key=score, default=None)


@dataclass(frozen=True)
class NearestEntry:
    """The knownMigGeometries model string closest to a GPU name, and its entry."""

    model: str
    rule: int


def nearest_entry(config: DeviceConfig, name: str, catalogue: Catalogue, like: GpuModel | None) -> NearestEntry | None:
    """The entry naming the nearest catalogue model (`like`) when one does, else the most similar model string."""
    candidates = [(model, r) for r, rule in enumerate(config.rules) for model in rule.models]
    if like is not None:
        for model, r in candidates:
            target = catalogue.find(model)
            if target is not None and target.name == like.name:
                return NearestEntry(model, r)
    wanted = normalise_model_name(name)
    best = max(candidates, default=None,
               key=lambda c: difflib.SequenceMatcher(None, wanted, normalise_model_name(c[0])).ratio())
    return None if best is None else NearestEntry(*best)
