#!/usr/bin/env python3
"""Packing benchmark: how many pods each MIG sharing scheme fits, and what it costs.

Pure simulation, deterministic for a seed. A node of N MIG GPUs of one model receives a seeded
trace of pods (Poisson arrivals, exponential lifetimes, `gpumem` from a documented distribution;
or a CSV trace). Each scheme sees the identical trace:

  static all-1g/all-2g/all-3g/all-balanced  GPU Operator default mig-parted layouts, fixed
  static best                               the best fixed layout for the trace, chosen in hindsight
  HAMi <= v2.6, HAMi v2.9                   HAMi's knownMigGeometries template walk (modelled from its source)
  HAMi v2.10                                HAMi's per-instance NVML placement (modelled from its source)
  hami/config, hami/any, best-fit/...       hami-mig's REAL planner (decide + apply_decision)
  best-fit/any+reserve                      stretch: best-fit/any holding a draining GPU for whole-GPU pods
  re-pack oracle (ceiling)                  may move every running instance at each decision
  LP bound (ceiling)                        offline LP relaxation: no scheme admits more (needs scipy)

See benchmarks/packing_sim/ for the model (each module's docstring) and docs/benchmarks.md for
results. `--quick` runs only the headline point (8x A100-SXM4-80GB, uniform mix, load 1.2).
`--dra` runs the DRA schemes (packing_sim/dra*.py) beside best-fit/any and HAMi instead
(docs/design/dra.md, the DRA section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from hami_mig.mig.catalogue import default_catalogue

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packing_sim import report, targets
from packing_sim.experiments import HEADLINE_MODEL, Plan, Results, aggregate, execute, replay
from packing_sim.workload import Pod, read_csv, read_openb, scale_to_load

NEED_TARGETS = (90.0, 95.0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="headline point only, one seed, 2000 pods (< 2 min)")
    ap.add_argument("--saturation", action="store_true",
                    help="only every mix at load 1.2 on 8 GPUs, --seeds seeds (default 5) from --seed")
    ap.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    ap.add_argument("--seeds", type=int, help="number of seeds averaged (default 3; quick 1)")
    ap.add_argument("--pods", type=int, help="measured pods per trace (default 3000; quick 2000)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--plots", type=Path, help="write PNG plots here (needs matplotlib; full run default docs/img)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--trace", type=Path,
                    help="replay a CSV trace instead: arrival,duration,gpumem, or Alibaba's openb_pod_list_*.csv")
    ap.add_argument("--load", type=float, help="with --trace: scale durations to this offered load after a "
                    "warm-up of the first 10%% of the pods")
    ap.add_argument("--model", default=HEADLINE_MODEL, help="GPU model for --trace")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs for --trace")
    ap.add_argument("--dra", action="store_true", help="DRA schemes beside best-fit/any and HAMi (docs/design/dra.md)")
    return ap.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.saturation:
        plan = Plan.saturation(args.seed, args.seeds or 5)
    else:
        plan = Plan.quick(args.seed) if args.quick else Plan(seed=args.seed)
    if args.seeds is not None:
        plan = replace(plan, seeds=args.seeds)
    if args.pods is not None:
        plan = replace(plan, pods=args.pods)
    return plan


def print_report(results: Results, plan: Plan, markdown: bool) -> None:
    head = results.get(HEADLINE_MODEL, 8, "uniform", plan.headline_load)
    if head is None:
        return
    queued = results.get(HEADLINE_MODEL, 8, "uniform", plan.headline_load, queued=True)
    title = f"{HEADLINE_MODEL} x8, uniform mix, offered load {plan.headline_load:g}"
    last = plan.seed + max(plan.seeds, plan.headline_seeds) - 1
    section(f"Saturation: {title}, no queue (seeds {plan.seed}..{last}, {plan.pods} pods each; "
            "sd = spread of admitted % over seeds)", report.headline_table(head, markdown))
    section("Refusals (% of offered pods) and the queued variant", report.refusal_table(head, queued, markdown))
    section(f"Saturation, every mix ({HEADLINE_MODEL} x8, load {plan.headline_load:g}, no queue)",
            report.saturation_table(results, plan, markdown))
    section("Targets", targets.targets_table(results, plan, markdown))
    section("HAMi under its GPU policies at saturation (admitted % / memory %; the rows above use index)",
            report.order_table(results, plan, markdown))
    for dist in plan.distributions if len(plan.loads) > 1 else ():
        section(f"{dist}: admitted % / memory % by offered load ({HEADLINE_MODEL} x8, no queue)",
                report.sweep_table(results, plan, dist, markdown))
    if len(plan.queued_loads) > 1:
        section("Queued: admitted % / mean pending (mean lifetimes)", report.queued_table(results, plan, markdown))
    if len(plan.models) > 1 or len(plan.sizes) > 1:
        section(f"Models and node sizes, uniform, load {plan.headline_load:g}: admitted % / memory %",
                report.grid_table(results, plan, markdown))
    if plan.need_sizes:
        section(f"GPUs needed: the 8-GPU load-{plan.need_load:g} uniform trace replayed on more GPUs",
                report.need_table(results, plan, NEED_TARGETS, markdown))
    section("hami/config next to HAMi (admitted % / memory %)", report.hami_comparison(results, markdown))


def section(title: str, body: str) -> None:
    print(f"\n## {title}\n\n{body}")


def read_trace(args: argparse.Namespace) -> tuple[list[Pod], float]:
    """The trace's pods (either format) and the warm-up time (0 unless --load rescales it)."""
    with args.trace.open() as fh:
        header = fh.readline()
    model = default_catalogue().lookup(args.model)
    pods = read_openb(args.trace, model) if "gpu_milli" in header else read_csv(args.trace)
    if args.load is None:
        return pods, 0.0
    return scale_to_load(pods, args.gpus, model, args.load)


def replay_trace(args: argparse.Namespace) -> int:
    pods, warmup = read_trace(args)
    dropped = replay(pods, args.model, args.gpus, queued=False, warmup=warmup)
    queued = replay(pods, args.model, args.gpus, queued=True, warmup=warmup)
    measured = sum(1 for p in pods if p.arrival >= warmup)
    load = f", offered load {args.load:g}" if args.load is not None else ""
    section(f"{args.trace} on {args.gpus}x {args.model} ({measured} pods measured{load}), no queue",
            report.headline_table(dropped, args.markdown))
    section("Refusals (% of offered pods) and the queued variant", report.refusal_table(dropped, queued, args.markdown))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.load is not None and args.trace is None:
        print("packing.py: --load applies to --trace only (synthetic traces are generated at each load)",
              file=sys.stderr)
        return 2
    if args.dra:
        from packing_sim.dra_report import run

        return run(args)
    if args.trace is not None:
        return replay_trace(args)
    plan = make_plan(args)
    t0 = time.perf_counter()
    tasks = plan.tasks()
    results = aggregate(execute(tasks, args.jobs))
    print_report(results, plan, args.markdown)
    plots = args.plots if args.plots is not None else (None if args.quick or args.saturation else Path("docs/img"))
    if plots is not None and not args.no_plots:
        from packing_sim.plots import draw_all

        for path in draw_all(results, plan, plots, NEED_TARGETS[-1]):
            print(f"wrote {path}")
    print(f"\n{len(tasks)} simulations of every scheme in {time.perf_counter() - t0:.0f} s with {args.jobs} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
