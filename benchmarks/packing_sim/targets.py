"""The packing targets, checked at the saturation point of every mix (8 GPUs, the headline load)."""

from __future__ import annotations

from dataclasses import dataclass

from .experiments import HEADLINE_MODEL, Plan, PointResult, Results
from .report import render
from .schemes import BEST_ANY, HAMI_CONFIG, HAMI_V29, HAMI_V210, RESERVE, STATIC_BEST

WHOLE = 3  # tier index of whole-GPU pods


@dataclass
class Target:
    text: str
    mix: str
    value: str
    met: bool


def _rel(a: float, b: float) -> float:
    return 100 * (a / b - 1) if b else 0.0


def mix_targets(mix: str, point: PointResult) -> list[Target]:
    """best-fit/any against both HAMi releases on one mix."""
    s = point.summaries
    bf, v29, v210 = s[BEST_ANY], s[HAMI_V29], s[HAMI_V210]
    pods, mem = _rel(bf.admitted_pct, v29.admitted_pct), _rel(bf.memory_pct, v29.memory_pct)
    return [
        Target("best-fit/any: >= 14 % more pods than HAMi v2.9", mix,
               f"{pods:+.1f} % ({bf.admitted_pct:.1f} vs {v29.admitted_pct:.1f})", pods >= 14),
        Target("best-fit/any: >= 20 % more memory than HAMi v2.9", mix,
               f"{mem:+.1f} % ({bf.memory_pct:.1f} vs {v29.memory_pct:.1f})", mem >= 20),
        Target("best-fit/any: more pods and memory than HAMi v2.10", mix,
               f"{bf.admitted_pct:.1f} / {bf.memory_pct:.1f} vs {v210.admitted_pct:.1f} / {v210.memory_pct:.1f}",
               bf.admitted_pct > v210.admitted_pct and bf.memory_pct > v210.memory_pct),
        Target("best-fit/any: fewer NVML ops per admission than HAMi v2.10", mix,
               f"{bf.ops_per_admit:.2f} vs {v210.ops_per_admit:.2f}", bf.ops_per_admit < v210.ops_per_admit),
    ]


def uniform_targets(point: PointResult) -> list[Target]:
    """The HAMi-compatible default, the whole-GPU stretch and the static layouts, on the uniform mix."""
    s = point.summaries
    bf, v29, hc, static = s[BEST_ANY], s[HAMI_V29], s[HAMI_CONFIG], s[STATIC_BEST]
    hami = _rel(hc.admitted_pct, v29.admitted_pct)
    out = [
        Target("hami/config (aim): >= 3 % more pods than HAMi v2.9", "uniform",
               f"{hami:+.1f} % ({hc.admitted_pct:.1f} vs {v29.admitted_pct:.1f})", hami >= 3),
        Target("best-fit/any: more pods and memory than the best static layout", "uniform",
               f"{bf.admitted_pct:.1f} / {bf.memory_pct:.1f} vs {static.admitted_pct:.1f} / "
               f"{point.best_static_memory:.1f}",
               bf.admitted_pct > static.admitted_pct and bf.memory_pct > point.best_static_memory),
    ]
    reserve = s.get(RESERVE)
    if reserve is not None:
        whole, loss = reserve.tier_pct[WHOLE], bf.admitted_pct - reserve.admitted_pct
        out.append(Target("+reserve: >= 30 % of whole-GPU pods, <= 1 point fewer pods", "uniform",
                          f"{whole:.1f} % whole (best-fit/any {bf.tier_pct[WHOLE]:.1f} %), {-loss:+.1f} points",
                          whole >= 30 and loss <= 1))
    return out


def all_targets(results: Results, plan: Plan) -> list[Target]:
    out: list[Target] = []
    for mix in plan.distributions:
        point = results.get(HEADLINE_MODEL, 8, mix, plan.headline_load)
        if point is not None:
            out += mix_targets(mix, point)
    uniform = results.get(HEADLINE_MODEL, 8, "uniform", plan.headline_load)
    if uniform is not None:
        out += uniform_targets(uniform)
    return sorted(out, key=lambda t: t.text)


def targets_table(results: Results, plan: Plan, markdown: bool = False) -> str:
    rows = [[t.text, t.mix, t.value, "met" if t.met else "MISSED"] for t in all_targets(results, plan)]
    return render(["target (saturation)", "mix", "value", ""], rows, markdown)
