"""The schemes compared, built fresh for each run (every scheme starts from empty GPUs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.geometry import GpuGeometries, default_device_config, resolve_for_gpu
from hami_mig.mig.planner import GeometryMode, Policy

from .hardware import maximal_layouts
from .legacy import LegacyHami
from .oracle import RepackOracle
from .planned import PlannerScheme
from .reserve import ReservingScheme
from .scheme import Scheme
from .static import OPERATOR_LAYOUTS, StaticScheme, describe_layout, operator_layout

LEGACY = "HAMi legacy"
HAMI_CONFIG = "hami/config"
HAMI_ANY = "hami/any"
BEST_CONFIG = "best-fit/config"
BEST_ANY = "best-fit/any"
RESERVE = "best-fit/any+reserve"
ORACLE = "re-pack oracle"
STATIC_PREFIX = "static "
STATIC_BEST = "static best"
PLANNER_RUNS: tuple[tuple[str, Policy, GeometryMode], ...] = (
    (HAMI_CONFIG, "hami", "config"), (HAMI_ANY, "hami", "any"),
    (BEST_CONFIG, "best-fit", "config"), (BEST_ANY, "best-fit", "any"),
)


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[[], Scheme]


def geometries(model: GpuModel) -> GpuGeometries:
    """HAMi's built-in knownMigGeometries resolved for the model (hami-mig's exact matching)."""
    return resolve_for_gpu(default_device_config(), model, default_catalogue())


def static_entries(model: GpuModel, gpus: int) -> list[Entry]:
    out = [
        Entry(STATIC_PREFIX + name, _static(STATIC_PREFIX + name, model, gpus, operator_layout(model, name)))
        for name in OPERATOR_LAYOUTS
    ]
    named = {tuple(sorted(operator_layout(model, n))) for n in OPERATOR_LAYOUTS}
    for layout in maximal_layouts(model):
        if tuple(sorted(layout)) not in named:
            label = STATIC_PREFIX + describe_layout(layout)
            out.append(Entry(label, _static(label, model, gpus, layout)))  # a "static best" candidate
    return out


def _static(name: str, model: GpuModel, gpus: int, layout: tuple[str, ...]) -> Callable[[], Scheme]:
    return lambda: StaticScheme(name, model, gpus, layout)


def dynamic_entries(model: GpuModel, gpus: int, reserve: bool = True) -> list[Entry]:
    geos = geometries(model)
    out = [Entry(LEGACY, lambda: LegacyHami(LEGACY, model, gpus, geos))]
    for name, policy, mode in PLANNER_RUNS:
        out.append(Entry(name, _planner(name, model, gpus, geos, policy, mode)))
    if reserve:
        out.append(Entry(RESERVE, lambda: ReservingScheme(RESERVE, model, gpus, geos)))
    out.append(Entry(ORACLE, lambda: RepackOracle(ORACLE, model, gpus)))
    return out


def _planner(
    name: str, model: GpuModel, gpus: int, geos: GpuGeometries, policy: Policy, mode: GeometryMode
) -> Callable[[], Scheme]:
    return lambda: PlannerScheme(name, model, gpus, geos, policy, mode)


def all_entries(model: GpuModel, gpus: int, reserve: bool = True) -> list[Entry]:
    return static_entries(model, gpus) + dynamic_entries(model, gpus, reserve)
