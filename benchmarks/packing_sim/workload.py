"""Pods, size tiers, seeded synthetic traces and the CSV trace format.

A pod asks for one MIG instance with at least `gpumem` MiB (nvidia.com/gpumem, nvidia.com/gpu: 1).
Its *tier* is the smallest memory size any profile of the model offers that covers it, using REAL
profile memory: on an A100-SXM4-80GB the tiers are 9728 (1g), 19968 (2 slices), 40192 (4 slices)
and 80896 MiB (the whole GPU).

Distributions (tier weights; gpumem is then uniform over the tier's MiB range, the first tier
starting at 1024 MiB):

- `uniform`  1/4 each tier ("mixed"; the headline workload)
- `small`    0.55 / 0.25 / 0.15 / 0.05 (inference-heavy)
- `large`    0.10 / 0.20 / 0.30 / 0.40 (training-heavy)
- `bursty`   uniform tier weights, but pods come in bursts: a burst is a Poisson event carrying a
             geometric number of identical pods (mean 4, one deployment's replicas), same load.

Arrivals are Poisson, lifetimes exponential with mean 1 (time is in mean lifetimes). The offered
load is `arrival rate x mean lifetime x mean gpumem / (GPUs x GPU memory)`.
"""

from __future__ import annotations

import csv
import math
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hami_mig.mig.catalogue import GpuModel

DISTRIBUTIONS: dict[str, tuple[float, ...]] = {
    "uniform": (0.25, 0.25, 0.25, 0.25),
    "small": (0.55, 0.25, 0.15, 0.05),
    "large": (0.10, 0.20, 0.30, 0.40),
    "bursty": (0.25, 0.25, 0.25, 0.25),
}
BURST_MEAN = 4.0
MIN_GPUMEM = 1024


@dataclass(frozen=True)
class Pod:
    """One pod of a trace: it arrives, asks for `gpumem` MiB, and runs `duration` once admitted."""

    id: int
    arrival: float
    duration: float
    gpumem: int


@dataclass(frozen=True)
class TraceSpec:
    """Everything that determines a synthetic trace (same spec + seed = same pods)."""

    model: str
    gpus: int
    distribution: str
    load: float
    pods: int
    seed: int
    warmup: float = 3.0

    def key(self) -> str:
        return f"{self.model}|{self.gpus}|{self.distribution}|{self.load:.3f}|{self.pods}|{self.seed}"


def tier_sizes(model: GpuModel) -> tuple[int, ...]:
    """The distinct real memories of the plannable profiles, ascending: one tier each."""
    return tuple(sorted({p.memory_mib for p in model.plannable}))


def tier_of(tiers: Sequence[int], gpumem: int) -> int | None:
    """Index of the smallest tier that covers `gpumem`; None when no profile is large enough."""
    for i, size in enumerate(tiers):
        if size >= gpumem:
            return i
    return None


def tier_ranges(tiers: Sequence[int]) -> list[tuple[int, int]]:
    lows = [MIN_GPUMEM, *(t + 1 for t in tiers[:-1])]
    return list(zip(lows, tiers, strict=True))


def mean_gpumem(tiers: Sequence[int], weights: Sequence[float]) -> float:
    ranges = tier_ranges(tiers)
    return sum(w * (lo + hi) / 2 for w, (lo, hi) in zip(weights, ranges, strict=True))


def _weights(distribution: str, n_tiers: int) -> tuple[float, ...]:
    try:
        weights = DISTRIBUTIONS[distribution]
    except KeyError:
        raise ValueError(f"distribution {distribution!r}: use one of {', '.join(DISTRIBUTIONS)}") from None
    if len(weights) != n_tiers:
        raise ValueError(f"{distribution} has {len(weights)} tier weights, the model has {n_tiers} tiers")
    return weights


def stable_seed(spec: TraceSpec) -> int:
    """A seed that depends on the whole spec, stable across runs and Python versions."""
    return zlib.crc32(spec.key().encode())


def generate(spec: TraceSpec, model: GpuModel) -> list[Pod]:
    """A seeded Poisson trace: about `spec.pods` pods after the warm-up, plus the warm-up's."""
    tiers = tier_sizes(model)
    weights = _weights(spec.distribution, len(tiers))
    rate = spec.load * spec.gpus * model.total_memory_mib / mean_gpumem(tiers, weights)
    horizon = spec.warmup + spec.pods / rate
    rng = random.Random(stable_seed(spec))
    burst = BURST_MEAN if spec.distribution == "bursty" else 1.0
    ranges = tier_ranges(tiers)
    pods: list[Pod] = []
    t = rng.expovariate(rate / burst)
    while t < horizon:
        size = _burst_size(rng, burst)
        tier = rng.choices(range(len(tiers)), weights)[0]
        gpumem = rng.randint(*ranges[tier])
        for _ in range(size):
            pods.append(Pod(len(pods), t, rng.expovariate(1.0), gpumem))
        t += rng.expovariate(rate / burst)
    return pods


def _burst_size(rng: random.Random, mean: float) -> int:
    """Geometric on 1, 2, ... with the given mean (1 = no bursts)."""
    if mean <= 1.0:
        return 1
    p = 1.0 / mean
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


def offered_load(pods: Sequence[Pod], gpus: int, model: GpuModel, start: float, end: float) -> float:
    """Measured offered load over [start, end): memory-time asked per memory-time available."""
    asked = sum(p.gpumem * p.duration for p in pods if start <= p.arrival < end)
    return asked / (gpus * model.total_memory_mib * max(end - start, 1e-9))


def read_csv(path: Path) -> list[Pod]:
    """A trace file: a header `arrival,duration,gpumem` then one pod a row (times in any unit)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"arrival", "duration", "gpumem"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    raw = sorted((float(r["arrival"]), float(r["duration"]), int(float(r["gpumem"]))) for r in rows)
    return [Pod(i, a, d, m) for i, (a, d, m) in enumerate(raw)]


def write_csv(path: Path, pods: Iterable[Pod]) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["arrival", "duration", "gpumem"])
        for p in pods:
            out.writerow([f"{p.arrival:.6f}", f"{p.duration:.6f}", p.gpumem])


def read_openb(path: Path, model: GpuModel) -> list[Pod]:
    """Alibaba's GPU cluster trace v2023 (`openb_pod_list_*.csv`, the FGD paper's) as MIG pods.

    Only single-GPU pods with a GPU share are kept; `gpumem` is the share (`gpu_milli` / 1000) of the
    model's largest MIG instance, `arrival` the creation time and `duration` deletion minus creation
    (seconds; pods still running when the trace ends last until its end).
    """
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("num_gpu") == "1" and int(r.get("gpu_milli") or 0) > 0]
    largest = model.largest.memory_mib
    raw = sorted((int(r["creation_time"]), max(1, int(r["deletion_time"]) - int(r["creation_time"])),
                  max(MIN_GPUMEM, round(int(r["gpu_milli"]) * largest / 1000))) for r in rows)
    return [Pod(i, float(a), float(d), m) for i, (a, d, m) in enumerate(raw)]


def scale_to_load(
    pods: Sequence[Pod], gpus: int, model: GpuModel, load: float, warmup_fraction: float = 0.1
) -> tuple[list[Pod], float]:
    """The pods with every duration scaled so the offered load after the warm-up is `load`.

    Arrivals are kept. The warm-up ends at the arrival of the first pod past `warmup_fraction` of
    the pods; returns the scaled pods and that time (measure only pods arriving after it).
    """
    if not pods:
        return [], 0.0
    order = sorted(pods, key=lambda p: (p.arrival, p.id))
    start, end = order[int(len(order) * warmup_fraction)].arrival, order[-1].arrival
    now = offered_load(order, gpus, model, start, end)
    k = load / now if now > 0 else 1.0
    return [Pod(p.id, p.arrival, p.duration * k, p.gpumem) for p in order], start
