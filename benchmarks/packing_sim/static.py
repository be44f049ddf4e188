"""Static MIG, GPU Operator mig-manager style: every GPU keeps one fixed layout for the whole run.

The layouts are the GPU Operator's default mig-parted config (`default-mig-parted-config`:
all-1g.*, all-2g.*, all-3g.*, all-balanced = 2x 1g + 1x 2g + 1x 3g), plus any other maximal legal
layout for the "best static layout in hindsight". A pod gets the smallest free instance whose
real memory covers it (ties: lowest GPU, lowest start). Creating the layout is a one-off at node
setup, so admissions cost no NVML operations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.layout import for_model

from .scheme import Admission, DecisionClock, Placement
from .workload import Pod

OPERATOR_LAYOUTS: dict[str, tuple[str, ...]] = {
    # name -> profiles by memory slices, resolved per model by `operator_layout`
    "all-1g": ("1",) * 7,
    "all-2g": ("2",) * 3,
    "all-3g": ("3",) * 2,
    "all-balanced": ("1", "1", "2", "3"),
}


def operator_layout(model: GpuModel, name: str) -> tuple[str, ...]:
    """The GPU Operator layout on this model: `1` = 1g (1 slice), `2` = 2g, `3` = 3g."""
    shape = {"1": (1, 1), "2": (2, 2), "3": (3, 4)}  # (compute slices, memory slices)
    by_compute = {
        k: next(p.name for p in model.plannable if (p.compute_slices, p.memory_slices) == v)
        for k, v in shape.items()
    }
    return tuple(by_compute[k] for k in OPERATOR_LAYOUTS[name])


def describe_layout(layout: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for name in layout:
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{n}x {p}" for p, n in counts.items())


class StaticScheme:
    """Every GPU carved into the same fixed layout; pods take the smallest covering free instance."""

    def __init__(self, name: str, model: GpuModel, gpus: int, layout: Sequence[str]) -> None:
        self.name = name
        self.model = model
        starts = for_model(model).assign(0, list(layout))
        if starts is None:
            raise ValueError(f"{describe_layout(layout)} has no legal placement on {model.name}")
        # (memory, gpu, start, profile): sorted, so the first free covering one is the smallest
        self.instances = sorted(
            (model.profile(p).memory_mib, g, s, p) for g in range(gpus) for p, s in zip(layout, starts, strict=True)
        )
        self.holder: dict[int, tuple[int, int, int, str]] = {}
        self.busy: set[tuple[int, int, int, str]] = set()
        self.clock = DecisionClock()
        self.tier_exact = True

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        inst = next((i for i in self.instances if i[0] >= pod.gpumem and i not in self.busy), None)
        self.clock.add(time.perf_counter() - t0)
        if inst is None:
            return None
        self.busy.add(inst)
        self.holder[pod.id] = inst
        mem, gpu, _start, profile = inst
        slices = self.model.profile(profile).memory_slices
        return Admission(gpu, profile, slices, mem, 0)

    def release(self, pod: Pod) -> None:
        self.busy.discard(self.holder.pop(pod.id))

    def in_use(self) -> list[list[Placement]]:
        gpus = 1 + max(i[1] for i in self.instances)
        out: list[list[Placement]] = [[] for _ in range(gpus)]
        for _mem, gpu, start, profile in self.busy:
            out[gpu].append((profile, start))
        return out
