"""The DRA section of the packing benchmark (`benchmarks/packing.py --dra`): tables and their run."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace

from hami_mig.mig.catalogue import GpuModel, default_catalogue

from .dra import nvidia_devices
from .dra_runs import (
    DRA_CURATED,
    DRA_FIRST_FIT,
    DRA_FIRST_FIT_UNSORTED,
    DRA_STATIC,
    HEADLINE_LAG,
    LAGS,
    DraPlan,
    Point,
    PointResult,
    aggregate,
    execute,
    lag_name,
    run_pods,
)
from .experiments import HEADLINE_MODEL
from .metrics import TIER_LABELS
from .report import f1, render
from .schemes import BEST_ANY
from .workload import DISTRIBUTIONS, mean_gpumem, read_csv, tier_sizes

DRA_ROWS = (DRA_FIRST_FIT, DRA_FIRST_FIT_UNSORTED, DRA_STATIC, DRA_CURATED,
            lag_name(HEADLINE_LAG, False), lag_name(HEADLINE_LAG, True))
NODES = 1000
SLICES_PER_REPUBLISH = 2  # Kubernetes 1.35+: one device slice + one counter slice per node of <= 8 GPUs
LIFETIMES_S = (60, 600, 3600)


def rows_of(point: PointResult) -> list[str]:
    """HAMi rows (whatever the main benchmark defines), best-fit/any, then the DRA rows."""
    refs = [n for n in point.summaries if n.startswith("HAMi")]
    return [*refs, BEST_ANY, *(n for n in DRA_ROWS if n in point.summaries)]


def headline_table(point: PointResult, markdown: bool = False) -> str:
    headers = ["scheme", "admitted %", "sd", "memory %", *(f"{t} %" for t in TIER_LABELS), "NVML ops/admit",
               "pods vs best-fit/any", "memory vs best-fit/any", "republishes/admit", "devices listed"]
    base = point.summaries[BEST_ANY]
    rows = []
    for name in rows_of(point):
        s = point.summaries[name]
        churn = point.churn.get(name)
        sd = f1(point.spread.get(name, 0.0)) if point.seeds > 1 else "-"
        rows.append([name, f1(s.admitted_pct), sd, f1(s.memory_pct), *(f1(x) for x in s.tier_pct[:4]),
                     f"{s.ops_per_admit:.2f}", f"{s.admitted_pct - base.admitted_pct:+.1f}",
                     f"{s.memory_pct - base.memory_pct:+.1f}",
                     f"{churn.republishes_per_admit:.2f}" if churn else "-",
                     f"{churn.devices_listed:.1f}" if churn else "-"])
    return render(headers, rows, markdown)


def _cell(point: PointResult | None, name: str) -> str:
    s = point.summaries.get(name) if point else None
    return f"{s.admitted_pct:.1f} / {s.memory_pct:.1f}" if s else "-"


def grid_table(results: dict[Point, PointResult], columns: Sequence[tuple[str, Point]], markdown: bool = False) -> str:
    present = [(label, p) for label, p in columns if p in results]
    if not present:
        return ""
    names = rows_of(results[present[0][1]])
    rows = [[n, *(_cell(results.get(p), n) for _label, p in present)] for n in names]
    return render(["scheme", *(label for label, _p in present)], rows, markdown)


def lag_table(results: dict[Point, PointResult], distributions: Sequence[str], load: float,
              markdown: bool = False) -> str:
    points = [(d, results.get(Point(HEADLINE_MODEL, d, load))) for d in distributions]
    points = [(d, p) for d, p in points if p is not None]
    headers = ["republish", *(f"{d}: {what}" for d, _p in points
                              for what in ("every K admissions", "... and every departure"))]
    rows = []
    for k in LAGS:
        rows.append([f"K = {k}", *(c for _d, p in points
                                   for c in (_cell(p, lag_name(k, False)), _cell(p, lag_name(k, True))))])
    return render(headers, rows, markdown)


def churn_table(point: PointResult, markdown: bool = False) -> str:
    """ResourceSlice writes at NODES nodes like the headline node, from the measured republishes per admission."""
    model = default_catalogue().lookup(point.point.model)
    rate = point.point.load * 8 * model.total_memory_mib / mean_gpumem(tier_sizes(model), DISTRIBUTIONS["uniform"])
    names = [n for n in (DRA_CURATED, lag_name(HEADLINE_LAG, False), lag_name(HEADLINE_LAG, True)) if n in point.churn]
    headers = ["scheme", "admissions / lifetime / node", "republishes / admission",
               *(f"slice writes/s, lifetime {s} s" for s in LIFETIMES_S)]
    rows = []
    for n in names:
        admits = rate * point.summaries[n].admitted_pct / 100
        per = point.churn[n].republishes_per_admit
        rows.append([n, f1(admits), f"{per:.2f}",
                     *(f"{NODES * admits / s * per * SLICES_PER_REPUBLISH:.0f}" for s in LIFETIMES_S)])
    return render(headers, rows, markdown)


def order_table(markdown: bool = False) -> str:
    """Per catalogue model: the profiles in NVIDIA's slice order, and where that order is not smallest-first."""
    rows = []
    for model in default_catalogue().models:
        order = _profile_order(model)
        rows.append([model.name, " < ".join(order), _inversion(model, order)])
    return render(["model", "NVIDIA's order on a GPU (first placement of each profile)", "larger before smaller"],
                  rows, markdown)


def _profile_order(model: GpuModel) -> list[str]:
    seen: list[str] = []
    for d in nvidia_devices(model, 0):
        if d.profile.name not in seen:
            seen.append(d.profile.name)
    return seen


def _inversion(model: GpuModel, order: Sequence[str]) -> str:
    mem = {p.name: p.memory_mib for p in model.profiles}
    found = [f"{a} ({mem[a]} MiB) before {b} ({mem[b]} MiB)"
             for i, a in enumerate(order) for b in order[i + 1:] if mem[a] > mem[b]]
    return "; ".join(found) or "none"


def section(title: str, body: str) -> None:
    if body:
        print(f"\n## {title}\n\n{body}")


def run(args: argparse.Namespace) -> int:
    """`packing.py --dra [--quick] [--trace F]`: every DRA table."""
    if args.trace is not None:
        pods = read_csv(args.trace)
        summaries, churn = run_pods(pods, args.model, args.gpus, 0.0)
        point = PointResult(Point(args.model, "trace", 0.0), summaries, churn)
        section(f"DRA: {args.trace} on {args.gpus}x {args.model} ({len(pods)} pods), no queue",
                headline_table(point, args.markdown))
        return 0
    plan = DraPlan.quick(args.seed) if args.quick else DraPlan(seed=args.seed)
    if args.seeds is not None:
        plan = replace(plan, seeds=args.seeds, headline_seeds=args.seeds)
    if args.pods is not None:
        plan = replace(plan, pods=args.pods)
    t0 = time.perf_counter()
    specs = plan.specs()
    results = aggregate(execute(specs, args.jobs))
    md = args.markdown
    head = results[Point(HEADLINE_MODEL, "uniform", plan.load)]
    last = plan.seed + head.seeds - 1
    section(f"DRA: {HEADLINE_MODEL} x{plan.gpus}, uniform mix, offered load {plan.load:g}, no queue "
            f"(seeds {plan.seed}..{last}, {plan.pods} pods each)", headline_table(head, md))
    mixes = [(f"{d} {plan.load:g}", Point(HEADLINE_MODEL, d, plan.load)) for d in ("uniform", *plan.distributions)]
    models = [(f"{m} x{plan.gpus}", Point(m, "uniform", plan.load)) for m in plan.models]
    section(f"DRA: mixes ({HEADLINE_MODEL} x{plan.gpus}) and models (uniform), load {plan.load:g}: "
            f"admitted % / memory % (seeds {plan.seed}..{plan.seed + plan.seeds - 1})",
            grid_table(results, mixes + models, md))
    loads = [(f"load {x:g}", Point(HEADLINE_MODEL, "uniform", x)) for x in (*plan.loads, plan.load)]
    section(f"DRA: uniform mix by offered load ({HEADLINE_MODEL} x{plan.gpus}): admitted % / memory %",
            grid_table(results, loads, md) if plan.loads else "")
    section(f"DRA curated: republish lag, load {plan.load:g}: admitted % / memory %",
            lag_table(results, [d for d in ("uniform", "bursty") if d == "uniform" or d in plan.distributions],
                      plan.load, md))
    section(f"DRA curated: ResourceSlice writes at {NODES} nodes like the headline node "
            f"({SLICES_PER_REPUBLISH} slices per republish)", churn_table(head, md))
    section("NVIDIA's device order by model (bytewise device names)", order_table(md))
    print(f"\n{len(specs)} traces, every DRA scheme and reference row, in {time.perf_counter() - t0:.0f} s "
          f"with {args.jobs} job(s)")
    return 0
