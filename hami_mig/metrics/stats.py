"""The agent's event counters (Allocate latency, reshapes, NVML/API errors), exposed at scrape time."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

ALLOCATE_OUTCOMES: tuple[str, ...] = ("allocated", "reused", "failed", "rejected")
RESHAPE_OPS: tuple[str, ...] = ("create", "destroy")
RESHAPE_RESULTS: tuple[str, ...] = ("ok", "failed", "rolled_back")

# Allocate spans a pod lookup (ms) up to a reshape on a busy GPU (seconds): 1 ms .. 30 s.
ALLOCATE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
)

# Free-form label values (NVML error codes, repair and API error kinds) come from a small fixed
# vocabulary in the agent; a bug that feeds them unbounded text must not explode cardinality.
MAX_VALUES_PER_FAMILY = 64
OTHER = "other"
_MAX_VALUE_LEN = 64


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one is +Inf
        self.total = 0.0


class AgentStats:
    """Thread-safe counters the agent bumps; register it in a CollectorRegistry to expose them.

    Plain counters rather than prometheus_client Counter objects: no `_created` series, every
    known label combination present from the start (so `rate()` sees the first event), and no
    process-global state.
    """

    def __init__(self, buckets: Sequence[float] = ALLOCATE_BUCKETS) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("histogram buckets must be non-empty, increasing and unique")
        self._lock = threading.Lock()
        self._buckets = tuple(float(b) for b in buckets)
        self._allocate = {o: _Histogram(len(self._buckets)) for o in ALLOCATE_OUTCOMES}
        self._reshape = {(op, r): 0 for op in RESHAPE_OPS for r in RESHAPE_RESULTS}
        self._nvml: dict[str, int] = {}
        self._repairs: dict[str, int] = {}
        self._api: dict[str, int] = {}

    # ------------------------------------------------------------------ what the agent calls

    def observe_allocate(self, seconds: float, outcome: str) -> None:
        """One kubelet Allocate call took `seconds` and ended in `outcome` (see ALLOCATE_OUTCOMES)."""
        if outcome not in self._allocate:
            raise ValueError(f"unknown Allocate outcome {outcome!r}; expected one of {ALLOCATE_OUTCOMES}")
        if not math.isfinite(seconds):
            raise ValueError(f"Allocate duration must be finite, got {seconds!r}")
        seconds = max(0.0, seconds)
        i = next((n for n, b in enumerate(self._buckets) if seconds <= b), len(self._buckets))
        with self._lock:
            h = self._allocate[outcome]
            h.counts[i] += 1
            h.total += seconds

    def count_reshape(self, op: str, result: str) -> None:
        """One MIG create/destroy operation finished with `result` (ok, failed, rolled_back)."""
        if (op, result) not in self._reshape:
            raise ValueError(f"unknown reshape op/result {op!r}/{result!r}; "
                             f"expected op in {RESHAPE_OPS} and result in {RESHAPE_RESULTS}")
        with self._lock:
            self._reshape[(op, result)] += 1

    def count_nvml_error(self, code_name: str) -> None:
        """An NVML call failed with this code name (e.g. "NVML_ERROR_IN_USE")."""
        self._bump(self._nvml, code_name)

    def count_reconcile_repair(self, kind: str) -> None:
        """The reconcile loop repaired a drift between the recorded and the real state."""
        self._bump(self._repairs, kind)

    def count_api_error(self, kind: str) -> None:
        """A Kubernetes API call failed (kind: e.g. "conflict", "timeout", "forbidden")."""
        self._bump(self._api, kind)

    def _bump(self, table: dict[str, int], value: str) -> None:
        key = str(value)[:_MAX_VALUE_LEN] or "unknown"
        with self._lock:
            if key not in table and len(table) >= MAX_VALUES_PER_FAMILY - 1:
                key = OTHER
            table[key] = table.get(key, 0) + 1

    # ------------------------------------------------------------------ what the registry calls

    def describe(self) -> Iterable[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(empty=False)

    def _families(self, empty: bool) -> Iterator[Metric]:
        with self._lock:
            allocate = {o: (list(h.counts), h.total) for o, h in self._allocate.items()}
            reshape = dict(self._reshape)
            nvml, repairs, api = dict(self._nvml), dict(self._repairs), dict(self._api)
        hist = HistogramMetricFamily(
            "hami_mig_allocate_duration_seconds",
            "Time the agent took to answer a kubelet Allocate call, by outcome "
            "(allocated: new instance created, reused: an existing free instance, failed: error, "
            "rejected: the request cannot be served).",
            labels=["outcome"], unit="seconds")
        reshapes = CounterMetricFamily(
            "hami_mig_reshape_operations_total",
            "MIG GPU/compute instance create and destroy operations, by result "
            "(rolled_back: undone after a later step of the same plan failed).",
            labels=["op", "result"])
        nvml_errors = CounterMetricFamily(
            "hami_mig_nvml_errors_total", "NVML calls that failed, by NVML error code name.", labels=["code"])
        repairs_f = CounterMetricFamily(
            "hami_mig_reconcile_repairs_total",
            "Drifts between the recorded and the real MIG state that the reconcile loop repaired, by kind.",
            labels=["kind"])
        api_errors = CounterMetricFamily(
            "hami_mig_api_errors_total", "Kubernetes API calls that failed, by kind.", labels=["kind"])
        if not empty:
            les = [_le(b) for b in self._buckets] + ["+Inf"]
            for outcome, (counts, total) in allocate.items():
                running, cumulative = 0, []
                for le, c in zip(les, counts, strict=True):
                    running += c
                    cumulative.append((le, float(running)))
                hist.add_metric([outcome], cumulative, total)
            for (op, result), n in reshape.items():
                reshapes.add_metric([op, result], n)
            for family, table in ((nvml_errors, nvml), (repairs_f, repairs), (api_errors, api)):
                for key in sorted(table):
                    family.add_metric([key], table[key])
        yield from (hist, reshapes, nvml_errors, repairs_f, api_errors)


def _le(bound: float) -> str:
    return repr(float(bound))
