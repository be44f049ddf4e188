"""Plain-text (or Markdown) tables of the results, and the issue's targets checked against them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .bound import Bound
from .experiments import HEADLINE_MODEL, Plan, PointResult, Results
from .metrics import TIER_LABELS, Summary
from .schemes import BEST_ANY, BEST_CONFIG, HAMI_ANY, HAMI_CONFIG, LEGACY, ORACLE, RESERVE, STATIC_BEST, STATIC_PREFIX

BOUND = "LP bound"
OPERATOR = tuple(STATIC_PREFIX + n for n in ("all-1g", "all-2g", "all-3g", "all-balanced"))
HEADLINE_ROWS = (*OPERATOR, STATIC_BEST, LEGACY, HAMI_CONFIG, HAMI_ANY, BEST_CONFIG, BEST_ANY, RESERVE, ORACLE)
MAIN_ROWS = (STATIC_BEST, LEGACY, HAMI_CONFIG, HAMI_ANY, BEST_CONFIG, BEST_ANY, ORACLE)
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


def headline_table(point: PointResult, markdown: bool = False) -> str:
    headers = ["scheme", "admitted %", "sd", "memory %", *(f"{t} %" for t in TIER_LABELS), "slice util %",
               "NVML ops/admit", "decide us", "undersized %"]
    rows: list[list[str]] = []
    for name in HEADLINE_ROWS:
        s = point.summaries.get(name)
        if s is None:
            continue
        ops = "-" if name == ORACLE else f"{s.ops_per_admit:.2f}"
        sd = f1(point.spread.get(name, 0.0)) if point.seeds > 1 else "-"
        rows.append([_label(name, s), f1(s.admitted_pct), sd, f1(s.memory_pct), *(f1(x) for x in s.tier_pct[:4]),
                     f1(s.slice_util_pct), ops, f"{s.decide_us:.0f}", f1(s.undersized_pct)])
    if point.bound is not None:
        rows.append([f"{BOUND} (ceiling)", f1(point.bound.admitted_pct), "-", f1(point.bound.memory_pct),
                     *["-"] * (len(headers) - 4)])
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


@dataclass
class Target:
    text: str
    value: str
    met: bool


def targets(point: PointResult) -> list[Target]:
    """The issue's saturation targets for best-fit/any, checked on the headline point."""
    s = point.summaries
    bf, legacy, static = s[BEST_ANY], s[LEGACY], s[STATIC_BEST]
    oracle = s[ORACLE]
    more_pods = 100 * (bf.admitted_pct / legacy.admitted_pct - 1)
    more_mem = 100 * (bf.memory_pct / legacy.memory_pct - 1)
    out = [
        Target(">= 14 % more pods than HAMi legacy", f"{more_pods:+.1f} %", more_pods >= 14),
        Target(">= 20 % more requested memory than HAMi legacy", f"{more_mem:+.1f} %", more_mem >= 20),
        Target("more pods than the best static layout", f"{bf.admitted_pct:.1f} vs {static.admitted_pct:.1f}",
               bf.admitted_pct > static.admitted_pct),
        Target("more memory than the best static layout (any layout)",
               f"{bf.memory_pct:.1f} vs {point.best_static_memory:.1f}", bf.memory_pct > point.best_static_memory),
        Target("within 1 point of the re-pack oracle (pods)", f"{bf.admitted_pct - oracle.admitted_pct:+.1f} pts",
               bf.admitted_pct >= oracle.admitted_pct - 1),
        Target("within 1 point of the re-pack oracle (memory)", f"{bf.memory_pct - oracle.memory_pct:+.1f} pts",
               bf.memory_pct >= oracle.memory_pct - 1),
        Target("<= 1 NVML mutating op per admission", f"{bf.ops_per_admit:.2f}", bf.ops_per_admit <= 1),
    ]
    reserve = s.get(RESERVE)
    if reserve is not None:
        loss = bf.admitted_pct - reserve.admitted_pct
        out.append(Target("stretch: reservation keeps whole-GPU admission >= 30 %",
                          f"{reserve.tier_pct[3]:.1f} % (best-fit/any {bf.tier_pct[3]:.1f} %)",
                          reserve.tier_pct[3] >= 30))
        out.append(Target("stretch: ... losing <= 3 points overall", f"{loss:.1f} pts", loss <= 3))
    return out


def targets_table(point: PointResult, markdown: bool = False) -> str:
    rows = [[t.text, t.value, "met" if t.met else "MISSED"] for t in targets(point)]
    return render(["target (best-fit/any, saturation)", "value", ""], rows, markdown)


def legacy_comparison(results: Results, markdown: bool = False) -> str:
    """hami/config next to HAMi legacy at every dropped point: where does it differ?"""
    rows = []
    for point, r in sorted(results.points.items(), key=lambda kv: str(kv[0])):
        if point.queued or point.trace_gpus != point.gpus:
            continue
        h, legacy = r.summaries[HAMI_CONFIG], r.summaries[LEGACY]
        rows.append([f"{point.model} x{point.gpus} {point.distribution} {point.load:g}",
                     f"{legacy.admitted_pct:.1f} / {legacy.memory_pct:.1f}",
                     f"{h.admitted_pct:.1f} / {h.memory_pct:.1f}",
                     f"{h.admitted_pct - legacy.admitted_pct:+.1f} / {h.memory_pct - legacy.memory_pct:+.1f}",
                     f1(legacy.undersized_pct)])
    return render(["point", "legacy pods / mem %", "hami/config pods / mem %", "difference",
                   "legacy undersized %"], rows, markdown)
