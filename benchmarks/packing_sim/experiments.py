"""The experiment grid: which traces, which node sizes, which variants; run in parallel, averaged.

A *task* is one trace (spec + seed) simulated on one node size in one variant (dropped or
queued) by every scheme; tasks are independent and run in a process pool. Results of the same
point (everything but the seed) are averaged over seeds.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from hami_mig.mig.catalogue import default_catalogue

from .bound import Bound, available, lp_bound
from .hardware import NodeFeasibility
from .metrics import Summary, mean_summary, summarize
from .schemes import STATIC_BEST, STATIC_PREFIX, all_entries
from .sim import simulate
from .workload import DISTRIBUTIONS, Pod, TraceSpec, generate

HEADLINE_MODEL = "A100-SXM4-80GB"
MODELS = ("A100-SXM4-40GB", "A100-SXM4-80GB", "H100-SXM5-80GB")


@dataclass(frozen=True)
class Task:
    spec: TraceSpec
    gpus: int  # node size simulated (the GPUs-needed sweep replays one trace on several sizes)
    queued: bool = False
    bound: bool = False
    reserve: bool = True
    orders: bool = False  # also HAMi under its own GPU policies (the saturation points)


@dataclass(frozen=True)
class Point:
    model: str
    gpus: int
    distribution: str
    load: float
    queued: bool
    trace_gpus: int


@dataclass
class PointResult:
    point: Point
    summaries: dict[str, Summary]
    bound: Bound | None = None
    best_static: str = ""
    best_static_memory: float = 0.0  # the best static memory % over every layout (may be another layout)
    seconds: float = 0.0
    seeds: int = 1
    spread: dict[str, float] = field(default_factory=dict)  # sample sd of admitted % over the seeds


@dataclass(frozen=True)
class Plan:
    """Everything a run does; `quick()` and `full()` are the two documented ones."""

    seed: int = 1
    seeds: int = 3
    pods: int = 3000
    loads: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0, 1.2, 1.5)
    distributions: tuple[str, ...] = tuple(DISTRIBUTIONS)
    queued_loads: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2)
    models: tuple[str, ...] = MODELS
    sizes: tuple[int, ...] = (1, 4, 8)
    need_sizes: tuple[int, ...] = (8, 9, 10, 11, 12, 13, 14, 15, 16)
    need_load: float = 0.8  # offered load of the GPUs-needed trace, relative to 8 GPUs
    headline_load: float = 1.2
    headline_seeds: int = 5  # the saturation points (every mix at headline_load) get more seeds than the sweeps

    @staticmethod
    def quick(seed: int = 1) -> Plan:
        return Plan(seed=seed, seeds=1, pods=2000, loads=(1.2,), distributions=("uniform",), queued_loads=(1.2,),
                    models=(HEADLINE_MODEL,), sizes=(8,), need_sizes=(), headline_seeds=1)

    @staticmethod
    def saturation(seed: int = 1, seeds: int = 5) -> Plan:
        """Only the saturation point of every mix, `seeds` seeds from `seed` (a check on other seeds)."""
        return Plan(seed=seed, seeds=seeds, loads=(1.2,), queued_loads=(), models=(HEADLINE_MODEL,), sizes=(8,),
                    need_sizes=(), headline_seeds=seeds)

    def spec(self, model: str, gpus: int, distribution: str, load: float, seed: int) -> TraceSpec:
        return TraceSpec(model, gpus, distribution, load, self.pods, seed)

    def tasks(self) -> list[Task]:
        out: list[Task] = []
        for seed in range(self.seed, self.seed + self.seeds):
            out += self._sweep(seed) + self._grid(seed) + self._need(seed)
        for seed in range(self.seed + self.seeds, self.seed + max(self.seeds, self.headline_seeds)):
            out += [self._saturation(d, seed) for d in self.distributions]
        return _dedupe(out)

    def _saturation(self, distribution: str, seed: int) -> Task:
        return Task(self.spec(HEADLINE_MODEL, 8, distribution, self.headline_load, seed), 8, bound=True, orders=True)

    def _sweep(self, seed: int) -> list[Task]:
        out = [self._saturation(d, seed) if load == self.headline_load else
               Task(self.spec(HEADLINE_MODEL, 8, d, load, seed), 8, bound=True)
               for d in self.distributions for load in self.loads]
        out += [Task(self.spec(HEADLINE_MODEL, 8, "uniform", load, seed), 8, queued=True) for load in self.queued_loads]
        return out

    def _grid(self, seed: int) -> list[Task]:
        return [self._saturation("uniform", seed) if (m, n) == (HEADLINE_MODEL, 8) else
                Task(self.spec(m, n, "uniform", self.headline_load, seed), n, bound=True)
                for m in self.models for n in self.sizes]

    def _need(self, seed: int) -> list[Task]:
        spec = self.spec(HEADLINE_MODEL, 8, "uniform", self.need_load, seed)
        # n = 8 is the sweep's own task at that load (same flags, so it runs once)
        return [Task(spec, n, bound=n == 8, reserve=n == 8) for n in self.need_sizes]


def _dedupe(tasks: Iterable[Task]) -> list[Task]:
    seen: dict[Task, None] = {}
    for t in tasks:
        seen.setdefault(t, None)
    return list(seen)


def run_task(task: Task) -> tuple[Task, dict[str, Summary], Bound | None, float]:
    """Every scheme on one trace; with `bound`, the LP bound too (when scipy is installed)."""
    t0 = time.perf_counter()
    model = default_catalogue().lookup(task.spec.model)
    pods = generate(task.spec, model)
    summaries = run_schemes(pods, task.spec.model, task.gpus, task.queued, task.spec.warmup, task.reserve,
                            task.orders)
    bound = lp_bound(pods, model, task.gpus, task.spec.warmup) if task.bound and available() else None
    return task, summaries, bound, time.perf_counter() - t0


def run_schemes(
    pods: Sequence[Pod], model_name: str, gpus: int, queued: bool, warmup: float, reserve: bool = True,
    orders: bool = False,
) -> dict[str, Summary]:
    model = default_catalogue().lookup(model_name)
    feasibility = NodeFeasibility(model, gpus)
    out: dict[str, Summary] = {}
    for entry in all_entries(model, gpus, reserve, orders):
        result = simulate(entry.build(), pods, model, gpus, queued=queued, warmup=warmup, feasibility=feasibility)
        out[entry.name] = summarize(result)
    return out


def replay(pods: Sequence[Pod], model_name: str, gpus: int, queued: bool, warmup: float = 0.0) -> PointResult:
    """Every scheme on a given trace; the LP bound too when dropped and scipy is there."""
    model = default_catalogue().lookup(model_name)
    summaries = run_schemes(pods, model_name, gpus, queued, warmup, orders=not queued)
    bound = lp_bound(pods, model, gpus, warmup) if not queued and available() else None
    result = PointResult(Point(model_name, gpus, "trace", 0.0, queued, gpus), summaries, bound)
    _pick_static(result)
    return result


def execute(tasks: Sequence[Task], jobs: int) -> list[tuple[Task, dict[str, Summary], Bound | None, float]]:
    if jobs <= 1:
        return [run_task(t) for t in tasks]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        return list(pool.imap_unordered(run_task, tasks, chunksize=1))


def point_of(task: Task) -> Point:
    s = task.spec
    return Point(s.model, task.gpus, s.distribution, s.load, task.queued, s.gpus)


@dataclass
class Results:
    points: dict[Point, PointResult] = field(default_factory=dict)

    def get(self, model: str, gpus: int, distribution: str, load: float, queued: bool = False,
            trace_gpus: int | None = None) -> PointResult | None:
        key = Point(model, gpus, distribution, load, queued, gpus if trace_gpus is None else trace_gpus)
        return self.points.get(key)


def aggregate(raw: Iterable[tuple[Task, dict[str, Summary], Bound | None, float]]) -> Results:
    """Average each point over its seeds and pick the static layout that was best in hindsight."""
    groups: dict[Point, list[tuple[dict[str, Summary], Bound | None, float]]] = {}
    for task, summaries, bound, seconds in raw:
        groups.setdefault(point_of(task), []).append((summaries, bound, seconds))
    results = Results()
    for point, items in groups.items():
        names = items[0][0].keys()
        summaries = {n: mean_summary([s[n] for s, _, _ in items]) for n in names}
        bounds = [b for _, b, _ in items if b is not None]
        bound = Bound(sum(b.admitted_pct for b in bounds) / len(bounds),
                      sum(b.memory_pct for b in bounds) / len(bounds)) if bounds else None
        spread = {n: _sd([s[n].admitted_pct for s, _, _ in items]) for n in names}
        result = PointResult(point, summaries, bound, seconds=sum(t for _, _, t in items), seeds=len(items),
                             spread=spread)
        _pick_static(result)
        results.points[point] = result
    return results


def _sd(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return float((sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5)


def _pick_static(result: PointResult) -> None:
    statics = {n: s for n, s in result.summaries.items() if n.startswith(STATIC_PREFIX)}
    best_name = max(statics, key=lambda n: (statics[n].admitted_pct, statics[n].memory_pct))
    result.best_static = best_name[len(STATIC_PREFIX):]
    result.best_static_memory = max(s.memory_pct for s in statics.values())
    result.summaries[STATIC_BEST] = replace(statics[best_name], scheme=f"{STATIC_BEST} ({result.best_static})")
    result.spread[STATIC_BEST] = result.spread.get(best_name, 0.0)
