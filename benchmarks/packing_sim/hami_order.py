"""The order in which HAMi's scheduler tries a node's GPUs (shared by the v2.9 and v2.10 models).

HAMi (v2.9.0 and v2.10.0 alike) scores every device before `Fit` (`pkg/scheduler/score.go`
`fitInDevices`: `ComputeScore`, then `sort.Sort(node.Devices)`), and `Fit`
(`pkg/device/nvidia/device.go`) walks the sorted list from its END (`for i := len(devices) - 1;
i >= 0; i--`; HAMi's own `TestDevices_Fit` "fit success" case picks `dev-1` of two equal devices).

- score (`pkg/scheduler/policy/gpu_policy.go` `ComputeScore`, weights 1):
  `(1 + Used) / Count + (req cores + Usedcores) / Totalcore + (req mem + Usedmem) / Totalmem`;
  the request terms are the same for every GPU, so they do not change the order.
- `spread` (HAMi's default `--gpu-scheduler-policy`, also the Helm chart's): the list is sorted by
  score descending, so `Fit` tries the LEAST used GPU first. `binpack`: ascending, so the MOST used
  GPU first. Go's `sort.Sort` sorts lists of at most 12 elements by insertion sort, which is
  stable, so equal scores keep registration (index) order and the backwards walk tries the
  HIGHEST index first among them.
- `index`: GPUs in index order (plain first fit). Not one of HAMi's policies, but the one under
  which HAMi v2.9 admits the most pods on the benchmark's traces, within 0.1 point on every mix
  (its default `spread` spreads small pods over every GPU and locks their geometries), so the
  baseline rows use it; the `spread` and `binpack` rows show HAMi with its own policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

GpuPolicy = Literal["spread", "binpack", "index"]
GPU_POLICIES: tuple[GpuPolicy, ...] = ("spread", "binpack", "index")


@dataclass(frozen=True)
class DeviceUsage:
    """The `DeviceUsage` fields the order and `Fit`'s pre-checks read (HAMi's names)."""

    used: int  # pods (containers) on the GPU
    count: int  # deviceSplitCount (v2.9) or the largest profile instance count (v2.10)
    used_cores: int
    total_cores: int
    used_mem: int
    total_mem: int

    def score(self) -> float:
        return self.used / self.count + self.used_cores / self.total_cores + self.used_mem / self.total_mem

    def passes_prechecks(self, memreq: int) -> bool:
        """`Fit`'s checks before `CustomFilterRule` for a request with no `gpucores` (Coresreq 0)."""
        if self.count <= self.used:  # CardTimeSlicingExhausted
            return False
        if self.total_mem - self.used_mem < memreq:  # CardInsufficientMemory
            return False
        if self.total_cores - self.used_cores < 0:  # CardInsufficientCore (Coresreq 0)
            return False
        return self.used_cores != self.total_cores  # CardComputeUnitsExhausted


def visit_order(devices: Sequence[DeviceUsage], policy: GpuPolicy) -> list[int]:
    """GPU indices in the order `Fit` tries them under the policy."""
    if policy == "index":
        return list(range(len(devices)))
    scores = [d.score() for d in devices]
    # sorted() is stable like Go's insertion sort for <= 12 devices; Fit then walks it backwards
    descending = policy == "spread"
    ranked = sorted(range(len(devices)), key=lambda i: -scores[i] if descending else scores[i])
    return ranked[::-1]
