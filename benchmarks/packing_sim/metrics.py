"""What is reported per scheme, computed from a SimResult (and averaged over seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from .sim import REFUSALS, SimResult

TIER_LABELS = ("1g", "2-slice", "4-slice", "whole")


@dataclass
class Summary:
    """Per-scheme numbers; percentages are of the measured pods (or of their memory)."""

    scheme: str
    pods: float
    admitted_pct: float
    memory_pct: float
    tier_pct: tuple[float, ...]
    refusal_pct: tuple[float, ...]  # free / move / none, as % of offered pods
    pending_mean: float  # mean wait of admitted pods, in mean lifetimes (queued runs)
    still_pending_pct: float  # % of pods still Pending at the end (queued runs)
    slice_util_pct: float
    ops_per_admit: float
    decide_us: float
    undersized_pct: float  # % of admitted pods whose instance is smaller than asked

    def row(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def summarize(result: SimResult) -> Summary:
    out = result.outcomes
    admitted = [o for o in out if o.admission is not None]
    n_tiers = 1 + max((o.tier for o in out if o.tier is not None), default=3)
    tier_pct = tuple(
        _pct(sum(1 for o in admitted if o.tier == k), sum(1 for o in out if o.tier == k))
        for k in range(max(n_tiers, len(TIER_LABELS)))
    )
    waits = [o.pending for o in admitted if o.pending is not None]
    span = max(result.end - result.start, 1e-12)
    return Summary(
        scheme=result.scheme,
        pods=float(len(out)),
        admitted_pct=_pct(len(admitted), len(out)),
        memory_pct=_pct(sum(o.pod.gpumem for o in admitted), sum(o.pod.gpumem for o in out)),
        tier_pct=tier_pct,
        refusal_pct=tuple(_pct(sum(1 for o in out if o.admission is None and o.refusal == r), len(out))
                          for r in REFUSALS),
        pending_mean=sum(waits) / len(waits) if waits else 0.0,
        still_pending_pct=_pct(sum(1 for o in out if o.admission is None), len(out)) if result.queued else 0.0,
        slice_util_pct=_pct(result.slice_time, result.memory_slices * span),
        ops_per_admit=sum(o.admission.ops for o in admitted if o.admission) / len(admitted) if admitted else 0.0,
        decide_us=1e6 * result.decide_s / result.decisions if result.decisions else 0.0,
        undersized_pct=_pct(sum(1 for o in admitted if o.admission and o.admission.instance_mib < o.pod.gpumem),
                            len(admitted)),
    )


def mean_summary(items: Sequence[Summary]) -> Summary:
    """Field-wise mean over seeds (the scheme name of the first)."""
    first = items[0]
    values: dict[str, object] = {"scheme": first.scheme}
    for f in fields(Summary):
        if f.name == "scheme":
            continue
        vals = [getattr(s, f.name) for s in items]
        if isinstance(vals[0], tuple):
            values[f.name] = tuple(sum(v[i] for v in vals) / len(vals) for i in range(len(vals[0])))
        else:
            values[f.name] = sum(vals) / len(vals)
    return Summary(**values)  # type: ignore[arg-type]
