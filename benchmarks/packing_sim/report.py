"""Plain-text (or Markdown) tables of the results (the targets are checked in targets.py)."""

from __future__ import annotations

from collections.abc import Sequence

from .bound import Bound
from .experiments import HEADLINE_MODEL, Plan, PointResult, Results
from .metrics import TIER_LABELS, Summary
from .schemes import (
    BEST_ANY,
    BEST_CONFIG,
    HAMI_ANY,
    HAMI_CONFIG,
    HAMI_ORDERS,
    HAMI_V26,
    HAMI_V29,
    HAMI_V210,
    ORACLE,
    RESERVE,
    STATIC_BEST,
    STATIC_PREFIX,
    ordered,
)

BOUND = "LP bound"
OPERATOR = tuple(STATIC_PREFIX + n for n in ("all-1g", "all-2g", "all-3g", "all-balanced"))
HAMI_ROWS = (HAMI_V26, HAMI_V29, HAMI_V210)
PLANNER_ROWS = (HAMI_CONFIG, HAMI_ANY, BEST_CONFIG, BEST_ANY)
HEADLINE_ROWS = (*OPERATOR, STATIC_BEST, *HAMI_ROWS, *PLANNER_ROWS, RESERVE, ORACLE)
MAIN_ROWS = (STATIC_BEST, HAMI_V29, HAMI_V210, *PLANNER_ROWS, ORACLE)
SATURATION_ROWS = (STATIC_BEST, HAMI_V26, HAMI_V29, HAMI_V210, HAMI_CONFIG, BEST_ANY, RESERVE, ORACLE)
NEED_ROWS = (*OPERATOR, *MAIN_ROWS)
Row = Sequence[str]


def render(headers: Row, rows: Sequence[Row], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Row) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def f1(x: float) -> str:
    return f"{x:.1f}"


def _label(name: str, s: Summary) -> str:
    if name == STATIC_BEST:
        return s.scheme
    if name == ORACLE:
        return f"{ORACLE} (ceiling)"
    return name


def gain(s: Summary, base: Summary | None) -> str:
    """Relative gain over a baseline, pods / memory: `+12.3 / +21.0` (%)."""
    if base is None or not base.admitted_pct or not base.memory_pct:
        return "-"
    return f"{100 * (s.admitted_pct / base.admitted_pct - 1):+.1f} / {100 * (s.memory_pct / base.memory_pct - 1):+.1f}"


def headline_table(point: PointResult, markdown: bool = False) -> str:
    headers = ["scheme", "admitted %", "sd", "memory %", "gain vs HAMi v2.9 %", "gain vs HAMi v2.10 %",
               *(f"{t} %" for t in TIER_LABELS), "slice util %", "NVML ops/admit", "decide us", "undersized %"]
    v29, v210 = point.summaries.get(HAMI_V29), point.summaries.get(HAMI_V210)
    rows: list[list[str]] = []
    for name in HEADLINE_ROWS:
        s = point.summaries.get(name)
        if s is None:
            continue
        ops = "-" if name == ORACLE else f"{s.ops_per_admit:.2f}"
        sd = f1(point.spread.get(name, 0.0)) if point.seeds > 1 else "-"
        rows.append([_label(name, s), f1(s.admitted_pct), sd, f1(s.memory_pct), gain(s, v29), gain(s, v210),
                     *(f1(x) for x in s.tier_pct[:4]), f1(s.slice_util_pct), ops, f"{s.decide_us:.0f}",
                     f1(s.undersized_pct)])
    if point.bound is not None:
        rows.append([f"{BOUND} (ceiling)", f1(point.bound.admitted_pct), "-", f1(point.bound.memory_pct),
                     *["-"] * (len(headers) - 4)])
    return render(headers, rows, markdown)


def saturation_table(results: Results, plan: Plan, markdown: bool = False) -> str:
    """Every mix at the saturation load: the schemes the targets name, with both gains."""
    headers = ["mix", "scheme", "admitted %", "memory %", "gain vs HAMi v2.9 %", "gain vs HAMi v2.10 %",
               "whole %", "NVML ops/admit"]
    rows: list[list[str]] = []
    for dist in plan.distributions:
        point = results.get(HEADLINE_MODEL, 8, dist, plan.headline_load)
        if point is None:
            continue
        v29, v210 = point.summaries.get(HAMI_V29), point.summaries.get(HAMI_V210)
        for name in SATURATION_ROWS:
            s = point.summaries.get(name)
            if s is None:
                continue
            ops = "-" if name == ORACLE else f"{s.ops_per_admit:.2f}"
            rows.append([dist, _label(name, s), f1(s.admitted_pct), f1(s.memory_pct), gain(s, v29), gain(s, v210),
                         f1(s.tier_pct[3]), ops])
        if point.bound is not None:
            rows.append([dist, f"{BOUND} (ceiling)", f1(point.bound.admitted_pct), f1(point.bound.memory_pct),
                         "-", "-", "-", "-"])
    return render(headers, rows, markdown)


def order_table(results: Results, plan: Plan, markdown: bool = False) -> str:
    """HAMi under each GPU order at saturation: admitted % / memory % (the baseline rows use `index`)."""
    orders = ("index", *HAMI_ORDERS)
    headers = ["mix", *(f"{v} {o}" for v in (HAMI_V29, HAMI_V210) for o in orders)]
    rows: list[list[str]] = []
    for dist in plan.distributions:
        point = results.get(HEADLINE_MODEL, 8, dist, plan.headline_load)
        if point is None:
            continue
        cells = []
        for v in (HAMI_V29, HAMI_V210):
            for o in orders:
                s = point.summaries.get(v if o == "index" else ordered(v, o))
                cells.append(f"{s.admitted_pct:.1f} / {s.memory_pct:.1f}" if s else "-")
        rows.append([dist, *cells])
    return render(headers, rows, markdown)


def refusal_table(dropped: PointResult, queued: PointResult | None, markdown: bool = False) -> str:
    headers = ["scheme", "refused: free placement %", "only by moving %", "no capacity %",
               "queued: admitted %", "queued: memory %", "mean pending (lifetimes)", "still pending %"]
    rows: list[list[str]] = []
    for name in HEADLINE_ROWS:
        s = dropped.summaries.get(name)
        if s is None:
            continue
        q = queued.summaries.get(name) if queued else None
        label = _label(name, s)
        if name == STATIC_BEST and q is not None and q.scheme != s.scheme:
            label += f"; queued: {q.scheme.removeprefix(STATIC_BEST + ' ')}"
        tail = ["-"] * 4
        if q is not None:
            tail = [f1(q.admitted_pct), f1(q.memory_pct), f"{q.pending_mean:.2f}", f1(q.still_pending_pct)]
        rows.append([label, *(f1(x) for x in s.refusal_pct), *tail])
    return render(headers, rows, markdown)


def sweep_table(results: Results, plan: Plan, distribution: str, markdown: bool = False) -> str:
    loads = [load for load in plan.loads if results.get(HEADLINE_MODEL, 8, distribution, load)]
    headers = ["scheme", *(f"load {load:g}" for load in loads)]
    rows = []
    for name in (*MAIN_ROWS, BOUND):
        cells = [_cell(results.get(HEADLINE_MODEL, 8, distribution, load), name) for load in loads]
        rows.append([name if name != STATIC_BEST else "static best (hindsight)", *cells])
    return render(headers, rows, markdown)


def queued_table(results: Results, plan: Plan, markdown: bool = False) -> str:
    loads = [load for load in plan.queued_loads if results.get(HEADLINE_MODEL, 8, "uniform", load, True)]
    headers = ["scheme", *(f"load {load:g}" for load in loads)]
    rows = []
    for name in MAIN_ROWS:
        cells = []
        for load in loads:
            point = results.get(HEADLINE_MODEL, 8, "uniform", load, True)
            s = point.summaries.get(name) if point else None
            cells.append(f"{s.admitted_pct:.1f} / {s.pending_mean:.2f}" if s else "-")
        rows.append([name if name != STATIC_BEST else "static best (hindsight)", *cells])
    return render(headers, rows, markdown)


def _cell(point: PointResult | None, name: str) -> str:
    if point is None:
        return "-"
    if name == BOUND:
        b: Bound | None = point.bound
        return f"{b.admitted_pct:.1f} / {b.memory_pct:.1f}" if b else "-"
    s = point.summaries.get(name)
    return f"{s.admitted_pct:.1f} / {s.memory_pct:.1f}" if s else "-"


def grid_table(results: Results, plan: Plan, markdown: bool = False) -> str:
    cols = [(m, n) for m in plan.models for n in plan.sizes if results.get(m, n, "uniform", plan.headline_load)]
    headers = ["scheme", *(f"{m} x{n}" for m, n in cols)]
    rows = []
    for name in (*MAIN_ROWS, BOUND):
        cells = [_cell(results.get(m, n, "uniform", plan.headline_load), name) for m, n in cols]
        rows.append([name if name != STATIC_BEST else "static best (hindsight)", *cells])
    return render(headers, rows, markdown)


def gpus_needed(results: Results, plan: Plan, target: float) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name in NEED_ROWS:
        out[name] = None
        for n in sorted(plan.need_sizes):
            point = results.get(HEADLINE_MODEL, n, "uniform", plan.need_load, trace_gpus=8)
            s = point.summaries.get(name) if point else None
            if s is not None and s.admitted_pct >= target:
                out[name] = n
                break
    return out


def need_table(results: Results, plan: Plan, targets: Sequence[float], markdown: bool = False) -> str:
    found = [gpus_needed(results, plan, t) for t in targets]
    top = max(plan.need_sizes, default=0)
    rows = [[name, *(str(f[name]) if f[name] is not None else f"> {top}" for f in found)] for name in found[0]]
    return render(["scheme", *(f"GPUs for >= {t:g} % admitted" for t in targets)], rows, markdown)


def hami_comparison(results: Results, markdown: bool = False) -> str:
    """hami/config next to HAMi v2.9 and v2.10 at every dropped point: where does it differ?"""
    rows = []
    for point, r in sorted(results.points.items(), key=lambda kv: str(kv[0])):
        if point.queued or point.trace_gpus != point.gpus:
            continue
        h, v29, v210 = r.summaries[HAMI_CONFIG], r.summaries[HAMI_V29], r.summaries[HAMI_V210]
        rows.append([f"{point.model} x{point.gpus} {point.distribution} {point.load:g}",
                     f"{v29.admitted_pct:.1f} / {v29.memory_pct:.1f}",
                     f"{v210.admitted_pct:.1f} / {v210.memory_pct:.1f}",
                     f"{h.admitted_pct:.1f} / {h.memory_pct:.1f}",
                     f"{h.admitted_pct - v29.admitted_pct:+.1f} / {h.memory_pct - v29.memory_pct:+.1f}",
                     f1(v29.undersized_pct)])
    return render(["point", "HAMi v2.9 pods / mem %", "HAMi v2.10 pods / mem %", "hami/config pods / mem %",
                   "hami/config - v2.9 (points)", "v2.9 undersized %"], rows, markdown)
