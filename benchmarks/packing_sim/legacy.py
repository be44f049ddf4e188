"""HAMi's legacy dynamic MIG (the `knownMigGeometries` design), modelled for the baseline.

This follows HAMi's scheduler filter (`CustomFilterRule` in pkg/device/nvidia/device.go, last
legacy release), not hami-mig's planner:

- A GPU's slot list is rebuilt from the pods that run on it; with no pod on it the list is empty
  and the GPU is "idle". Only then may a geometry be chosen: the FIRST geometry whose FIRST entry's
  nominal memory is >= the request (so a 2g-sized request skips `1x 1g + 3x 2g`, whose first entry
  is the 1g, and lands on `2x 3g`).
- A busy GPU keeps its geometry; the pod takes the first free slot whose NOMINAL config memory is
  strictly greater than the request (`Memory > Memreq`). The real instance can be smaller than the
  nominal number (A100-40GB 1g.5gb: 5120 nominal, 4864 real): such admissions are counted as
  undersized.
- GPUs are tried in index order (binpack-like; HAMi's device scoring order is ignored, which only
  helps the baseline). Model matching is taken as correct (HAMi's substring match finds no entry
  for "NVIDIA H100 80GB HBM3" at all; the baseline is spared that defect).
- NVML cost: when the chosen geometry differs from the one on the hardware, the whole GPU is
  reconfigured (every old instance destroyed, every slot of the new geometry created); instances
  are never released per pod, so an idle GPU keeps its last geometry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries, ResolvedGeometry
from hami_mig.mig.layout import for_model

from .scheme import Admission, DecisionClock, Placement
from .workload import Pod


@dataclass
class _Gpu:
    geometry: int | None = None  # position in the resolved list while any slot is in use
    busy: list[bool] = field(default_factory=list)
    on_hardware: int | None = None  # geometry whose instances exist on the GPU


class LegacyHami:
    """HAMi's legacy first-fit geometry walk with whole-GPU geometry lock."""

    def __init__(self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries) -> None:
        self.name = name
        self.model = model
        self.geometries: tuple[ResolvedGeometry, ...] = geometries.geometries
        lay = for_model(model)
        self.starts: list[tuple[int, ...]] = []
        for geo in self.geometries:
            starts = lay.assign(0, list(geo.profiles))
            if starts is None:
                raise ValueError(f"geometry {geo.describe()} has no placement on {model.name}")
            self.starts.append(starts)
        self.gpus = [_Gpu() for _ in range(gpus)]
        self.holder: dict[int, tuple[int, int]] = {}
        self.clock = DecisionClock()
        self.tier_exact = False  # nominal memory: the fit changes inside a real-memory tier

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        found = self._find(pod.gpumem)
        self.clock.add(time.perf_counter() - t0)
        if found is None:
            return None
        index, geo, busy, slot = found
        ops = self._take(self.gpus[index], geo, busy, slot)
        self.holder[pod.id] = (index, slot)
        profile = self.geometries[geo].slots[slot].profile
        return Admission(index, profile.name, profile.memory_slices, profile.memory_mib, ops)

    def _find(self, gpumem: int) -> tuple[int, int, list[bool], int] | None:
        """(GPU, geometry, slot busy flags, slot) of HAMi's first fit, or None."""
        for index, gpu in enumerate(self.gpus):
            geo = self._geometry_for(gpu, gpumem)
            if geo is None:
                continue
            busy = gpu.busy if gpu.geometry is not None else [False] * len(self.geometries[geo].slots)
            slot = next(
                (s.index for s in self.geometries[geo].slots if not busy[s.index] and s.nominal_memory > gpumem),
                None,
            )
            if slot is not None:
                return index, geo, busy, slot
        return None

    def _geometry_for(self, gpu: _Gpu, gpumem: int) -> int | None:
        if gpu.geometry is not None:
            return gpu.geometry
        for pos, geo in enumerate(self.geometries):
            if geo.slots and geo.slots[0].nominal_memory >= gpumem:
                return pos
        return None

    def _take(self, gpu: _Gpu, geo: int, busy: list[bool], slot: int) -> int:
        ops = 0
        if gpu.geometry is None:
            gpu.geometry = geo
            gpu.busy = busy
            if gpu.on_hardware != geo:
                old = len(self.geometries[gpu.on_hardware].slots) if gpu.on_hardware is not None else 0
                ops = old + len(self.geometries[geo].slots)
                gpu.on_hardware = geo
        gpu.busy[slot] = True
        return ops

    def release(self, pod: Pod) -> None:
        index, slot = self.holder.pop(pod.id)
        gpu = self.gpus[index]
        gpu.busy[slot] = False
        if not any(gpu.busy):
            gpu.geometry = None
            gpu.busy = []

    def in_use(self) -> list[list[Placement]]:
        out: list[list[Placement]] = []
        for gpu in self.gpus:
            held: list[Placement] = []
            if gpu.geometry is not None:
                geo = self.geometries[gpu.geometry]
                starts = self.starts[gpu.geometry]
                held = [(s.profile.name, starts[s.index]) for s in geo.slots if gpu.busy[s.index]]
            out.append(held)
        return out
