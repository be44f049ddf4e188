"""The DRA comparison: which traces, which schemes, run in parallel and averaged over seeds.

The traces are the main benchmark's (`experiments.Plan.spec`: same TraceSpec, same seeds, same
pods), so every DRA row sits beside the best-fit/any and HAMi rows of the same trace; those
reference rows are re-run here from `schemes.dynamic_entries` (best-fit/any and every scheme
whose name starts with "HAMi").
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from hami_mig.mig.catalogue import GpuModel, default_catalogue

from .dra import DraFirstFit
from .dra_curated import DraCurated, DraStaticOrder
from .experiments import HEADLINE_MODEL, Plan
from .hardware import NodeFeasibility
from .metrics import Summary, mean_summary, summarize
from .scheme import Scheme
from .schemes import BEST_ANY, Entry, dynamic_entries, geometries
from .sim import simulate
from .workload import Pod, TraceSpec, generate

DRA_FIRST_FIT = "DRA first fit"
DRA_FIRST_FIT_UNSORTED = "DRA first fit, 1.34/1.35 slice order"
DRA_STATIC = "DRA static, smallest first"
DRA_CURATED = "DRA curated"
LAGS = (1, 2, 4, 8)
HEADLINE_LAG = 4
OTHER_MODELS = ("A100-SXM4-40GB", "H100-SXM5-80GB")


def lag_name(k: int, departures: bool) -> str:
    """Row name of the curated driver republishing after every k-th admission (and every departure)."""
    if k == 1 and departures:
        return DRA_CURATED
    return f"{DRA_CURATED}, lag {k}" + (", departures republished" if departures else "")


def dra_entries(model: GpuModel, gpus: int) -> list[Entry]:
    geos = geometries(model)
    out = [
        Entry(DRA_FIRST_FIT, lambda: DraFirstFit(DRA_FIRST_FIT, model, gpus)),
        Entry(DRA_FIRST_FIT_UNSORTED, lambda: DraFirstFit(DRA_FIRST_FIT_UNSORTED, model, gpus, "random", seed=gpus)),
        Entry(DRA_STATIC, lambda: DraStaticOrder(DRA_STATIC, model, gpus, geos)),
        Entry(DRA_CURATED, lambda: DraCurated(DRA_CURATED, model, gpus, geos)),
    ]
    for k in LAGS:
        for departures in (False, True) if k > 1 else (False,):  # lag 1 + departures is DRA curated itself
            out.append(Entry(lag_name(k, departures), _curated(lag_name(k, departures), model, gpus, k, departures)))
    return out


def _curated(name: str, model: GpuModel, gpus: int, lag: int, departures: bool) -> Callable[[], Scheme]:
    geos = geometries(model)
    return lambda: DraCurated(name, model, gpus, geos, lag, departures)


def reference_entries(model: GpuModel, gpus: int) -> list[Entry]:
    """best-fit/any and the HAMi baselines, exactly as the main benchmark builds them."""
    return [e for e in dynamic_entries(model, gpus, reserve=False) if e.name == BEST_ANY or e.name.startswith("HAMi")]


@dataclass(frozen=True)
class Churn:
    """What a curated driver would write: republishes per admitted pod, devices per published list."""

    republishes_per_admit: float
    devices_listed: float


@dataclass(frozen=True)
class Point:
    model: str
    distribution: str
    load: float


@dataclass
class PointResult:
    point: Point
    summaries: dict[str, Summary]
    churn: dict[str, Churn]
    seeds: int = 1
    spread: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


Raw = tuple[TraceSpec, dict[str, Summary], dict[str, Churn], float]


@dataclass(frozen=True)
class DraPlan:
    """The traces: headline point (more seeds), the other mixes, two more models, lower loads."""

    seed: int = 1
    seeds: int = 3
    headline_seeds: int = 5
    pods: int = 3000
    load: float = 1.2
    distributions: tuple[str, ...] = ("small", "large", "bursty")
    models: tuple[str, ...] = OTHER_MODELS
    loads: tuple[float, ...] = (0.6, 0.8, 1.0)
    gpus: int = 8

    @staticmethod
    def quick(seed: int = 1) -> DraPlan:
        return DraPlan(seed=seed, seeds=1, headline_seeds=1, pods=2000, distributions=(), models=(), loads=())

    def spec(self, model: str, distribution: str, load: float, seed: int) -> TraceSpec:
        return Plan(pods=self.pods).spec(model, self.gpus, distribution, load, seed)

    def specs(self) -> list[TraceSpec]:
        out = [self.spec(HEADLINE_MODEL, "uniform", self.load, s)
               for s in range(self.seed, self.seed + max(self.seeds, self.headline_seeds))]
        for s in range(self.seed, self.seed + self.seeds):
            out += [self.spec(HEADLINE_MODEL, d, self.load, s) for d in self.distributions]
            out += [self.spec(m, "uniform", self.load, s) for m in self.models]
            out += [self.spec(HEADLINE_MODEL, "uniform", x, s) for x in self.loads]
        return out


def run_pods(pods: Sequence[Pod], model_name: str, gpus: int, warmup: float) -> tuple[dict[str, Summary],
                                                                                      dict[str, Churn]]:
    """Every DRA scheme and reference row on one trace (dropped variant)."""
    model = default_catalogue().lookup(model_name)
    feasibility = NodeFeasibility(model, gpus)
    summaries: dict[str, Summary] = {}
    churn: dict[str, Churn] = {}
    for entry in reference_entries(model, gpus) + dra_entries(model, gpus):
        scheme = entry.build()
        summary = summarize(simulate(scheme, pods, model, gpus, warmup=warmup, feasibility=feasibility))
        summaries[entry.name] = summary
        if isinstance(scheme, DraCurated) and not isinstance(scheme, DraStaticOrder):
            churn[entry.name] = Churn(scheme.republishes / max(1, scheme.admissions),
                                      scheme.listed / max(1, scheme.computed))
    return summaries, churn


def run_spec(spec: TraceSpec) -> Raw:
    t0 = time.perf_counter()
    pods = generate(spec, default_catalogue().lookup(spec.model))
    summaries, churn = run_pods(pods, spec.model, spec.gpus, spec.warmup)
    return spec, summaries, churn, time.perf_counter() - t0


def execute(specs: Sequence[TraceSpec], jobs: int) -> list[Raw]:
    if jobs <= 1:
        return [run_spec(s) for s in specs]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        return list(pool.imap_unordered(run_spec, specs, chunksize=1))


def aggregate(raw: Iterable[Raw]) -> dict[Point, PointResult]:
    """Average every point over its seeds (sd = sample spread of admitted % over the seeds)."""
    groups: dict[Point, list[Raw]] = {}
    for item in raw:
        spec = item[0]
        groups.setdefault(Point(spec.model, spec.distribution, spec.load), []).append(item)
    out: dict[Point, PointResult] = {}
    for point, items in groups.items():
        names = list(items[0][1])
        summaries = {n: mean_summary([s[n] for _, s, _, _ in items]) for n in names}
        churn = {n: Churn(sum(c[n].republishes_per_admit for _, _, c, _ in items) / len(items),
                          sum(c[n].devices_listed for _, _, c, _ in items) / len(items))
                 for n in items[0][2]}
        spread = {n: _sd([s[n].admitted_pct for _, s, _, _ in items]) for n in names}
        out[point] = PointResult(point, summaries, churn, len(items), spread, sum(t for *_, t in items))
    return out


def _sd(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0
