"""A rigorous offline upper bound on what any no-preemption scheme can admit (needs scipy).

Proof sketch. Let x_p = 1 when pod p is admitted at its arrival (dropped mode: a pod is admitted
then or never, and runs its whole duration). At any instant t the running pods' tier vector v(t)
must be hostable by the node, i.e. v(t) = g_1 + ... + g_N with each g_i hostable by one GPU
(`hardware.gpu_vectors`; migration would not change this). So v(t) lies in N * conv(G), where
conv(G) is the convex hull of one GPU's hostable vectors: for each facet a.v <= 1 of conv(G),
sum over running pods of a[tier(p)] * x_p <= N. Relaxing x_p to [0, 1] gives a linear program
whose optimum bounds the admitted count (or memory) of EVERY scheme on this trace, the re-pack
oracle included. The running set only grows at arrivals, so constraints at the arrivals that are
followed by a departure (or by the end) suffice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from hami_mig.mig.catalogue import GpuModel

from .hardware import gpu_vectors, hardware
from .workload import Pod


@dataclass(frozen=True)
class Bound:
    admitted_pct: float
    memory_pct: float


def available() -> bool:
    try:
        import scipy  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def facets(model: GpuModel) -> tuple[tuple[float, ...], ...]:
    """Facets a.v <= 1 of the hull of one GPU's hostable pod vectors (the non-negativity ones dropped)."""
    import numpy as np
    from scipy.spatial import ConvexHull

    hull = ConvexHull(np.array(sorted(gpu_vectors(model)), dtype=float))
    out: set[tuple[float, ...]] = set()
    for *normal, offset in hull.equations:
        if offset < -1e-9:  # a.v + offset <= 0 with offset < 0: a.v <= -offset
            out.add(tuple(round(float(a / -offset), 9) for a in normal))
    return tuple(sorted(out))


def _rows(pods: Sequence[Pod]) -> list[list[int]]:
    """Sets of simultaneously running pods (indices), one per arrival followed by a departure."""
    events = sorted([(p.arrival, 1, i) for i, p in enumerate(pods)] + [(p.arrival + p.duration, 0, i)
                                                                      for i, p in enumerate(pods)])
    running: set[int] = set()
    rows: list[list[int]] = []
    grew = False
    for _t, kind, i in events:
        if kind == 1:
            running.add(i)
            grew = True
            continue
        if grew:
            rows.append(sorted(running))
            grew = False
        running.discard(i)
    if grew:
        rows.append(sorted(running))
    return rows


def lp_bound(pods: Sequence[Pod], model: GpuModel, gpus: int, warmup: float) -> Bound:
    """Upper bounds on admitted % (pods) and admitted memory % of the pods arriving after `warmup`."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    hw = hardware(model)
    tiers = [hw.tier(p.gpumem) for p in pods]
    keep = [i for i, t in enumerate(tiers) if t is not None]
    live = [pods[i] for i in keep]
    data: list[float] = []
    cols: list[int] = []
    ptr = [0]
    for row in _rows(live):
        for a in facets(model):
            for j in row:
                coef = a[tiers[keep[j]] or 0]
                if coef > 0:
                    data.append(coef)
                    cols.append(j)
            ptr.append(len(data))
    matrix = csr_matrix((data, cols, ptr), shape=(len(ptr) - 1, len(live)))
    rhs = np.full(matrix.shape[0], float(gpus))
    measured = np.array([1.0 if p.arrival >= warmup else 0.0 for p in live])
    memory = np.array([float(p.gpumem) if p.arrival >= warmup else 0.0 for p in live])
    total_pods = sum(1 for p in pods if p.arrival >= warmup)
    total_mem = sum(p.gpumem for p in pods if p.arrival >= warmup)
    best = []
    for weights in (measured, memory):
        res = linprog(-weights, A_ub=matrix, b_ub=rhs, bounds=(0, 1), method="highs")
        if res.status != 0:
            raise RuntimeError(f"LP bound failed: {res.message}")
        best.append(-res.fun)
    return Bound(100.0 * best[0] / max(total_pods, 1), 100.0 * best[1] / max(total_mem, 1))
