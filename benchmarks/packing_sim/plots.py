"""PNG plots of a full run (matplotlib is imported here only, so the rest runs without it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import schemes as sc
from .experiments import HEADLINE_MODEL, Plan, PointResult, Results
from .metrics import TIER_LABELS
from .report import BOUND, HEADLINE_ROWS, MAIN_ROWS, NEED_ROWS

COLORS = {
    "static all-1g": "#c7c7c7", "static all-2g": "#9e9e9e", "static all-3g": "#7f7f7f",
    "static all-balanced": "#bcbd22",
    sc.STATIC_BEST: "#8c564b", sc.HAMI_V26: "#f7a1a1", sc.HAMI_V29: "#d62728", sc.HAMI_V210: "#e377c2",
    sc.HAMI_CONFIG: "#ff7f0e", sc.HAMI_ANY: "#9467bd", sc.BEST_CONFIG: "#17becf",
    sc.BEST_ANY: "#1f77b4", sc.RESERVE: "#2ca02c", sc.ORACLE: "#000000", BOUND: "#000000",
}
STYLE: dict[str, dict[str, Any]] = {
    name: {"color": color, "linestyle": "--" if name == sc.ORACLE else ":" if name == BOUND else "-"}
    for name, color in COLORS.items()
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(name: str) -> str:
    return {sc.STATIC_BEST: "static best (hindsight)", sc.ORACLE: "re-pack oracle (ceiling)",
            BOUND: "LP bound (ceiling)"}.get(name, name)


def _value(point: PointResult | None, name: str, field: str) -> float | None:
    if point is None:
        return None
    if name == BOUND:
        bound = point.bound
        return None if bound is None else (bound.admitted_pct if field == "admitted_pct" else bound.memory_pct)
    s = point.summaries.get(name)
    return None if s is None else float(getattr(s, field))


def load_sweeps(results: Results, plan: Plan, out: Path, field: str, ylabel: str) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey=True)
    for ax, dist in zip(axes.flat, plan.distributions, strict=False):
        for name in (*MAIN_ROWS, BOUND):
            pts = [(load, _value(results.get(HEADLINE_MODEL, 8, dist, load), name, field)) for load in plan.loads]
            xs = [x for x, y in pts if y is not None]
            ax.plot(xs, [y for _, y in pts if y is not None], marker="o", label=_label(name), **STYLE.get(name, {}))
        ax.set_title(f"{dist} ({HEADLINE_MODEL} x8, no queue)")
        ax.set_xlabel("offered load (x node memory)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    return _save(fig, out / f"packing_{field.removesuffix('_pct')}_vs_load.png")


def saturation_bars(point: PointResult, out: Path) -> Path:
    plt = _pyplot()
    names = [n for n in HEADLINE_ROWS if n in point.summaries]
    labels = [point.summaries[n].scheme if n == sc.STATIC_BEST else n for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    _bars(axes[0], labels, {"admitted %": [point.summaries[n].admitted_pct for n in names],
                            "memory %": [point.summaries[n].memory_pct for n in names]})
    if point.bound is not None:
        axes[0].axhline(point.bound.admitted_pct, color="black", linestyle=":", label="LP bound, pods")
        axes[0].axhline(point.bound.memory_pct, color="grey", linestyle=":", label="LP bound, memory")
    axes[0].legend(fontsize=8)
    axes[0].set_title("admitted pods and requested memory")
    tiers = {t: [point.summaries[n].tier_pct[i] for n in names] for i, t in enumerate(TIER_LABELS)}
    _bars(axes[1], labels, tiers)
    axes[1].legend(fontsize=8)
    axes[1].set_title("admission rate per size tier")
    fig.suptitle(f"{HEADLINE_MODEL} x8, uniform mix, offered load 1.2, no queue")
    return _save(fig, out / "packing_saturation.png")


def refusal_bars(point: PointResult, out: Path) -> Path:
    plt = _pyplot()
    names = [n for n in HEADLINE_ROWS if n in point.summaries]
    fig, ax = plt.subplots(figsize=(10, 5))
    bottom = [0.0] * len(names)
    kinds = ("a free legal placement existed", "only moving running instances would help", "no capacity")
    for i, kind in enumerate(kinds):
        vals = [point.summaries[n].refusal_pct[i] for n in names]
        ax.bar(range(len(names)), vals, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("% of offered pods refused")
    ax.legend(fontsize=8)
    ax.set_title("why pods were refused (saturation, no queue)")
    return _save(fig, out / "packing_refusals.png")


def queued_plot(results: Results, plan: Plan, out: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in MAIN_ROWS:
        for ax, field in zip(axes, ("admitted_pct", "pending_mean"), strict=True):
            pts = [(load, _value(results.get(HEADLINE_MODEL, 8, "uniform", load, True), name, field))
                   for load in plan.queued_loads]
            ax.plot([x for x, y in pts if y is not None], [y for _, y in pts if y is not None], marker="o",
                    label=_label(name), **STYLE.get(name, {}))
    axes[0].set_ylabel("admitted % (within the trace)")
    axes[1].set_ylabel("mean pending time (mean lifetimes)")
    for ax in axes:
        ax.set_xlabel("offered load")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"queued variant: refused pods stay Pending and retry ({HEADLINE_MODEL} x8, uniform)")
    return _save(fig, out / "packing_queued.png")


def need_plot(results: Results, plan: Plan, out: Path, target: float) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = sorted(plan.need_sizes)
    for name in NEED_ROWS:
        pts = [(n, _value(results.get(HEADLINE_MODEL, n, "uniform", plan.need_load, trace_gpus=8), name,
                          "admitted_pct")) for n in sizes]
        ax.plot([x for x, y in pts if y is not None], [y for _, y in pts if y is not None], marker="o",
                label=_label(name), **STYLE.get(name, {}))
    ax.axhline(target, color="black", linewidth=0.8)
    ax.set_xlabel("GPUs on the node")
    ax.set_ylabel("admitted %")
    ax.set_title(f"one trace (load {plan.need_load:g} of 8 GPUs) on bigger nodes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "packing_gpus_needed.png")


def _bars(ax: Any, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], vals, width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def draw_all(results: Results, plan: Plan, out: Path, target: float = 95.0) -> list[Path]:
    head = results.get(HEADLINE_MODEL, 8, "uniform", plan.headline_load)
    jobs: list[Callable[[], Path]] = []
    if head is not None:
        jobs += [lambda: saturation_bars(head, out), lambda: refusal_bars(head, out)]
    if len(plan.loads) > 1:
        jobs += [lambda: load_sweeps(results, plan, out, "admitted_pct", "admitted %"),
                 lambda: load_sweeps(results, plan, out, "memory_pct", "admitted memory %")]
    if len(plan.queued_loads) > 1:
        jobs.append(lambda: queued_plot(results, plan, out))
    if plan.need_sizes:
        jobs.append(lambda: need_plot(results, plan, out, target))
    return [job() for job in jobs]

