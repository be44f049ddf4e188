"""The schemes compared, built fresh for each run (every scheme starts from empty GPUs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.geometry import GpuGeometries, default_device_config, resolve_for_gpu
from hami_mig.mig.planner import GeometryMode, Policy

from .hami_order import GpuPolicy
from .hami_v29 import HamiGeometries
from .hami_v210 import HamiV210
from .hardware import maximal_layouts
from .oracle import RepackOracle
from .planned import PlannerScheme
from .reserve import ReservingScheme
from .scheme import Scheme
from .static import OPERATOR_LAYOUTS, StaticScheme, describe_layout, operator_layout

HAMI_V29 = "HAMi v2.9"
HAMI_V26 = "HAMi <= v2.6"
HAMI_V210 = "HAMi v2.10"
LEGACY = HAMI_V29  # the name this baseline had before v2.9 was modelled exactly
HAMI_ORDERS: tuple[GpuPolicy, ...] = ("spread", "binpack")  # HAMi's GPU policies besides the headline order
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


def hami_entries(model: GpuModel, gpus: int, geos: GpuGeometries, orders: bool = False) -> list[Entry]:
    """HAMi's dynamic MIG releases; with `orders`, also under HAMi's own GPU policies (spread, binpack)."""
    out = [
        Entry(HAMI_V26, lambda: HamiGeometries(HAMI_V26, model, gpus, geos, first_entry=True, strict=True)),
        Entry(HAMI_V29, lambda: HamiGeometries(HAMI_V29, model, gpus, geos)),
        Entry(HAMI_V210, lambda: HamiV210(HAMI_V210, model, gpus)),
    ]
    for order in HAMI_ORDERS if orders else ():
        out.append(Entry(ordered(HAMI_V29, order), _v29(model, gpus, geos, order)))
        out.append(Entry(ordered(HAMI_V210, order), _v210(model, gpus, order)))
    return out


def ordered(name: str, order: GpuPolicy) -> str:
    return f"{name} ({order})"


def _v29(model: GpuModel, gpus: int, geos: GpuGeometries, order: GpuPolicy) -> Callable[[], Scheme]:
    return lambda: HamiGeometries(ordered(HAMI_V29, order), model, gpus, geos, order=order)


def _v210(model: GpuModel, gpus: int, order: GpuPolicy) -> Callable[[], Scheme]:
    return lambda: HamiV210(ordered(HAMI_V210, order), model, gpus, order=order)


def dynamic_entries(model: GpuModel, gpus: int, reserve: bool = True, orders: bool = False) -> list[Entry]:
    geos = geometries(model)
    out = hami_entries(model, gpus, geos, orders)
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


def all_entries(model: GpuModel, gpus: int, reserve: bool = True, orders: bool = False) -> list[Entry]:
    return static_entries(model, gpus) + dynamic_entries(model, gpus, reserve, orders)
