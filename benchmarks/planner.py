"""Planner benchmarks: decision latency on 8-GPU nodes, and every state of one GPU.

Prints plain-text tables and asserts nothing (timings belong here, not in tests).

    .venv/bin/python benchmarks/planner.py            # full run, about 1 minute on 2 cores
    .venv/bin/python benchmarks/planner.py --quick    # smaller samples, under 30 s

(a) latency: random, seeded, partially used 8-GPU nodes (each GPU a random legal layout, each
    instance in use or free), one random request per node, timed per `decide()` call with
    `time.perf_counter_ns`, for every policy x geometries mode, with the placement caches of
    `hami_mig.mig.layout` warm (filled by a first pass over the same decisions) and cold (emptied
    before every decision). The geometry lookup is resolved once per model, as an agent would.
(b) exhaustive: every legal layout of the plannable profiles of one GPU, each instance in use or
    free (`--quick`: only the all-free and all-in-use variant of each layout), one decision per
    state x request x policy x mode, each checked: no destroy of an in-use instance, no create
    over one, no allocation of one, a legal result that keeps every in-use instance.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hami_mig.errors import InputError
from hami_mig.mig import capacity, layout, planner
from hami_mig.mig.catalogue import Catalogue, GpuModel, default_catalogue
from hami_mig.mig.geometry import DeviceConfig, GpuGeometries, default_device_config, resolve_for_gpu
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES, GeometryMode, Policy, apply_decision, covers, decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance, check_layout

LATENCY_MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
EXHAUSTIVE_MODEL = "NVIDIA A100-SXM4-80GB"
GPUS_PER_NODE = 8
IN_USE_PROBABILITY = 0.6
COMBOS: tuple[tuple[Policy, GeometryMode], ...] = tuple((p, m) for p in POLICIES for m in GEOMETRY_MODES)


# --------------------------------------------------------------------------- helpers


class CachedLookup:
    """The geometries of each model, resolved once (an agent resolves them when the config loads)."""

    def __init__(self, config: DeviceConfig, catalogue: Catalogue) -> None:
        self.config = config
        self.catalogue = catalogue
        self._resolved: dict[str, GpuGeometries] = {}

    def __call__(self, gpu: GpuState) -> GpuGeometries:
        hit = self._resolved.get(gpu.model.name)
        if hit is None:
            hit = self._resolved[gpu.model.name] = resolve_for_gpu(self.config, gpu.model, self.catalogue)
        return hit


def clear_layout_caches() -> None:
    """Forget every per-model Layouts object, its memoised placement searches, and the planner's memos."""
    layout._CACHE.clear()
    layout.Layouts._assign_sorted.cache_clear()
    capacity.clear_caches()
    planner.clear_memos()


def percentile(sorted_ns: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    if not sorted_ns:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_ns)))
    return sorted_ns[rank - 1]


def us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = right if right is not None else [False] * len(headers)

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(r, widths, align, strict=True)).rstrip()

    out = [line(cells[0]), line(["-" * w for w in widths])]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


# --------------------------------------------------------------------------- random states


def random_gpu(rng: random.Random, model: GpuModel, index: int) -> GpuState:
    """A legal layout built by up to 8 random legal insertions; each instance in use or free."""
    lay = for_model(model)
    occupied = 0
    counts: dict[str, int] = {}
    instances: list[Instance] = []
    for _ in range(rng.randint(0, 8)):
        profile = rng.choice(model.plannable)
        starts = lay.free_starts(profile.name, occupied)
        if not starts or counts.get(profile.name, 0) >= profile.max_count:
            continue
        start = rng.choice(starts)
        occupied |= profile_mask(profile, start)
        counts[profile.name] = counts.get(profile.name, 0) + 1
        in_use = rng.random() < IN_USE_PROBABILITY
        instances.append(Instance(profile.name, start, in_use, f"MIG-{index}-{profile.name}-{start}"))
    return GpuState(index, f"GPU-{index}", model).with_instances(instances)


def random_request(rng: random.Random, model: GpuModel) -> Request:
    """Mostly gpumem (log-uniform from 1 GiB to the largest profile), some percentages and whole GPUs."""
    count = rng.choices((1, 2, 4), weights=(80, 15, 5))[0]
    kind = rng.random()
    if kind < 0.75:
        mib = int(math.exp(rng.uniform(math.log(1024), math.log(model.largest.memory_mib))))
        return Request(count, memory_mib=mib)
    if kind < 0.9:
        return Request(count, memory_percent=rng.choice((10, 12, 25, 30, 50, 100)))
    return Request(count)


# --------------------------------------------------------------------------- (a) latency


@dataclass
class LatencyRow:
    model: str
    policy: str
    mode: str
    cache: str
    best: list[int] = field(default_factory=list)  # per decision: the fastest wall time of the repeats, sorted
    cpu: list[int] = field(default_factory=list)  # per decision: the least process CPU time of the repeats, sorted
    raw: list[int] = field(default_factory=list)  # wall time of every timed call, sorted
    fits: int = 0


def time_decisions(
    cases: Sequence[tuple[list[GpuState], Request]],
    lookup: Callable[[GpuState], GpuGeometries],
    policy: Policy,
    mode: GeometryMode,
    cold: bool,
    repeat: int,
) -> tuple[list[int], list[int], list[int], int]:
    """(fastest wall time per decision, least CPU time per decision, every wall time, decisions that fit).

    Wall time is `perf_counter_ns`; CPU time (`process_time_ns`) leaves out the time this process
    waited for a core, which matters on a small shared machine.
    """
    best: list[int] = []
    cpu: list[int] = []
    raw: list[int] = []
    fits = 0
    wall_clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    gc.collect()
    for gpus, request in cases:
        fastest = least = sys.maxsize
        for _ in range(repeat):
            if cold:
                clear_layout_caches()
            c0 = cpu_clock()
            t0 = wall_clock()
            d = decide(gpus, request, lookup, policy, mode)
            dt = wall_clock() - t0
            dc = cpu_clock() - c0
            raw.append(dt)
            fastest = min(fastest, dt)
            least = min(least, dc)
        best.append(fastest)
        cpu.append(least)
        fits += d.fits
    return best, cpu, raw, fits


def bench_latency(nodes: int, seed: int, repeat: int) -> list[LatencyRow]:
    catalogue = default_catalogue()
    lookup = CachedLookup(default_device_config(), catalogue)
    rows: list[LatencyRow] = []
    for name in LATENCY_MODELS:
        model = catalogue.lookup(name)
        rng = random.Random(f"{seed}-{name}")
        cases = [
            ([random_gpu(rng, model, i) for i in range(GPUS_PER_NODE)], random_request(rng, model))
            for _ in range(nodes)
        ]
        for policy, mode in COMBOS:
            for cold in (False, True):
                if not cold:
                    clear_layout_caches()
                    time_decisions(cases, lookup, policy, mode, cold=False, repeat=1)  # warm-up pass
                best, cpu, raw, fits = time_decisions(cases, lookup, policy, mode, cold, repeat)
                rows.append(LatencyRow(model.name, policy, mode, "cold" if cold else "warm",
                                       sorted(best), sorted(cpu), sorted(raw), fits))
    return rows


def print_latency(rows: Sequence[LatencyRow], nodes: int, seed: int, repeat: int) -> None:
    print(f"(a) decision latency, {GPUS_PER_NODE}-GPU node, {nodes} random seeded states per model (seed {seed}), "
          f"microseconds per decide().\nEach decision is timed {repeat}x; p50/p99/max/mean: its fastest wall time; "
          f"cpu p99: its least process CPU time; raw p99/max: every one of the {repeat * nodes} calls.")
    body = []
    for r in rows:
        b, raw = r.best, r.raw
        body.append([r.model, r.policy, r.mode, r.cache, len(b), r.fits, us(percentile(b, 50)),
                     us(percentile(b, 99)), us(b[-1]), us(sum(b) / len(b)), us(percentile(r.cpu, 99)),
                     us(percentile(raw, 99)), us(raw[-1])])
    print(table(["model", "policy", "geometries", "cache", "decisions", "fits", "p50", "p99", "max", "mean",
                 "cpu p99", "raw p99", "raw max"], body, [False] * 4 + [True] * 9))
    print()


# --------------------------------------------------------------------------- (b) exhaustive


def legal_layouts(model: GpuModel) -> list[tuple[tuple[str, int], ...]]:
    """Every set of non-overlapping placements of plannable profiles within the max counts."""
    placements = [(p.name, s, profile_mask(p, s), p.max_count) for p in model.plannable for s in p.starts]
    out: list[tuple[tuple[str, int], ...]] = []
    chosen: list[tuple[str, int]] = []
    counts: dict[str, int] = {}

    def walk(i: int, occupied: int) -> None:
        if i == len(placements):
            out.append(tuple(chosen))
            return
        walk(i + 1, occupied)
        name, start, m, limit = placements[i]
        if not m & occupied and counts.get(name, 0) < limit:
            chosen.append((name, start))
            counts[name] = counts.get(name, 0) + 1
            walk(i + 1, occupied | m)
            counts[name] -= 1
            chosen.pop()

    walk(0, 0)
    return out


def states_of(model: GpuModel, layouts: Sequence[tuple[tuple[str, int], ...]], quick: bool) -> Iterator[GpuState]:
    """Each layout with every in-use/free assignment (quick: all free and all in use only)."""
    for lay in layouts:
        masks = ([0, (1 << len(lay)) - 1] if lay else [0]) if quick else list(range(1 << len(lay)))
        for bits in masks:
            instances = [
                Instance(name, start, bool(bits >> k & 1), f"MIG-{name}-{start}")
                for k, (name, start) in enumerate(lay)
            ]
            yield GpuState(0, "GPU-0", model).with_instances(instances)


def exhaustive_requests(model: GpuModel) -> list[Request]:
    """Each distinct profile memory exactly and 1 MiB above it, two percentages, a whole GPU."""
    sizes = sorted({p.memory_mib for p in model.plannable})
    reqs = [Request(memory_mib=m) for m in sizes] + [Request(memory_mib=m + 1) for m in sizes]
    return [*reqs, Request(memory_percent=25), Request(memory_percent=50), Request()]


def hardware_can_host(gpu: GpuState, request: Request) -> bool:
    """Oracle: some covering profile has a placement clear of every in-use instance."""
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    return any(covers(p, gpu.model, request) and lay.free_starts(p.name, fixed) for p in gpu.model.plannable)


def violations(gpu: GpuState, request: Request, d: Decision) -> list[str]:
    """Everything wrong with a decision with respect to the in-use instances (empty: safe)."""
    if not d.fits:
        return []
    found: list[str] = []
    model = gpu.model
    in_use = {i.key() for i in gpu.in_use()}
    lay = for_model(model)
    fixed = lay.occupied(in_use)
    for op in d.operations:
        if op.op == "destroy" and (op.profile, op.start) in in_use:
            found.append(f"destroys in-use {op.profile}@{op.start}")
        if op.op == "create" and profile_mask(model.profile(op.profile), op.start) & fixed:
            found.append(f"creates {op.profile}@{op.start} over an in-use instance")
    for a in d.allocations:
        if (a.profile, a.start) in in_use:
            found.append(f"allocates in-use {a.profile}@{a.start}")
        if not covers(model.profile(a.profile), model, request):
            found.append(f"{a.profile} does not cover {request.describe()}")
    (after,) = apply_decision([gpu], d)
    try:
        check_layout(model, after.instances)
    except InputError as exc:
        found.append(f"illegal result: {exc}")
    kept = {i.key() for i in after.instances}
    found += [f"in-use {p}@{s} moved or vanished" for p, s in in_use if (p, s) not in kept]
    return found


@dataclass
class ExhaustiveRow:
    policy: str
    mode: str
    decisions: int = 0
    fits: int = 0
    hardware: int = 0
    refused_but_possible: int = 0
    violations: int = 0
    ns: int = 0
    samples: list[int] = field(default_factory=list)
    fits_by_request: list[int] = field(default_factory=list)


ExhaustiveResult = tuple[int, int, list[Request], list[int], list[ExhaustiveRow], list[str]]


def bench_exhaustive(model_name: str, quick: bool) -> ExhaustiveResult:
    catalogue = default_catalogue()
    model = catalogue.lookup(model_name)
    lookup = CachedLookup(default_device_config(), catalogue)
    layouts = legal_layouts(model)
    states = list(states_of(model, layouts, quick))
    requests = exhaustive_requests(model)
    possible = [0] * len(requests)
    oracle: list[list[bool]] = []
    for g in states:
        hosts = [hardware_can_host(g, r) for r in requests]
        oracle.append(hosts)
        for k, ok in enumerate(hosts):
            possible[k] += ok
    rows: list[ExhaustiveRow] = []
    examples: list[str] = []
    fit_sets: dict[tuple[str, str], list[bool]] = {}
    clock = time.perf_counter_ns
    for policy, mode in COMBOS:
        row = ExhaustiveRow(policy, mode, fits_by_request=[0] * len(requests))
        fitted: list[bool] = []
        gc.collect()
        for g, can in zip(states, oracle, strict=True):
            for k, request in enumerate(requests):
                t0 = clock()
                d = decide([g], request, lookup, policy, mode)
                dt = clock() - t0
                row.ns += dt
                row.samples.append(dt)
                row.decisions += 1
                row.fits += d.fits
                row.fits_by_request[k] += d.fits
                row.hardware += can[k]
                row.refused_but_possible += can[k] and not d.fits
                fitted.append(d.fits)
                bad = violations(g, request, d)
                row.violations += len(bad)
                if bad and len(examples) < 5:
                    examples.append(f"{policy}/{mode} {request.describe()} on {g.instances}: {bad}")
                if d.fits and not can[k] and len(examples) < 5:
                    examples.append(f"{policy}/{mode} fits where the oracle says no: {g.instances}")
        row.samples.sort()
        rows.append(row)
        fit_sets[(policy, mode)] = fitted
    for mode in GEOMETRY_MODES:
        a, b = fit_sets[("hami", mode)], fit_sets[("best-fit", mode)]
        differ = sum(x != y for x, y in zip(a, b, strict=True))
        if differ:
            examples.append(f"geometries={mode}: hami and best-fit disagree on whether {differ} decisions fit")
    return len(layouts), len(states), requests, possible, rows, examples


def print_exhaustive(model_name: str, quick: bool) -> None:
    t0 = time.perf_counter_ns()
    n_layouts, n_states, requests, possible, rows, notes = bench_exhaustive(model_name, quick)
    wall = (time.perf_counter_ns() - t0) / 1e9
    which = ("all-free and all-in-use variant of each layout" if quick
             else "every in-use/free assignment of each layout")
    print(f"(b) exhaustive state space of one {model_name}: {n_layouts} legal layouts of plannable profiles "
          f"(empty included), {which} = {n_states} states; {len(requests)} requests per state")
    body = []
    for r in rows:
        s = r.samples
        body.append([r.policy, r.mode, n_states, r.decisions, r.fits, r.hardware, r.refused_but_possible,
                     r.violations, f"{r.ns / 1e9:.2f}", us(r.ns / r.decisions), us(percentile(s, 99)), us(s[-1])])
    print(table(["policy", "geometries", "states", "decisions", "fits", "hw-possible", "refused-but-possible",
                 "violations", "total s", "mean us", "p99 us", "max us"],
                body, [False, False] + [True] * 10))
    print()
    print("fits per request (of", n_states, "states); hw-possible = some covering profile has a placement "
          "clear of the in-use instances")
    body = []
    for k, req in enumerate(requests):
        body.append([req.describe().removeprefix("1 instance of "), possible[k]]
                    + [r.fits_by_request[k] for r in rows])
    print(table(["request", "hw-possible"] + [f"{r.policy}/{r.mode}" for r in rows], body,
                [False] + [True] * (1 + len(rows))))
    print()
    print(f"violations in total: {sum(r.violations for r in rows)} (must be 0)")
    for note in notes:
        print("  note:", note)
    print(f"exhaustive part wall time: {wall:.1f} s (including the safety checks)")
    print()


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller samples (under 30 s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random node states (default 1)")
    ap.add_argument("--nodes", type=int, help="random nodes per model for (a) (default 1000, quick 150)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per decision in (a) (default 3)")
    ap.add_argument("--part", choices=("all", "latency", "exhaustive"), default="all")
    ap.add_argument("--model", default=EXHAUSTIVE_MODEL, help=f"GPU model for (b) (default {EXHAUSTIVE_MODEL})")
    args = ap.parse_args(argv)
    nodes = args.nodes or (150 if args.quick else 1000)
    started = time.perf_counter_ns()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}, "
          f"{'quick' if args.quick else 'full'} run")
    print()
    if args.part in ("all", "latency"):
        print_latency(bench_latency(nodes, args.seed, args.repeat), nodes, args.seed, args.repeat)
    if args.part in ("all", "exhaustive"):
        print_exhaustive(args.model, args.quick)
    print(f"total wall time: {(time.perf_counter_ns() - started) / 1e9:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
