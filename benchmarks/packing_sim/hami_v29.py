"""HAMi's `knownMigGeometries` dynamic MIG (v2.5 ... v2.9), modelled from its source for the baseline.

HAMi v2.9.0 (`pkg/device/nvidia/device.go`, functions `Fit`, `CustomFilterRule`, `AddResourceUsage`):

- A GPU's slot list (`MigUsage.UsageList`) is rebuilt from the pods running on it
  (`pkg/scheduler/scheduler.go` `getNodesUsage`: `PlatternMIG` of the template index in the pod's
  `GPU-<uuid>[<template>-<slot>]` record), so it is empty exactly when no pod runs there. Only
  then may a geometry be chosen: the FIRST template in config order that has ANY entry with
  `template.Memory >= request.Memreq` (`CustomFilterRule`'s loop over `MigTemplate`; HAMi's own
  `TestDevices_AddResourceUsage` "verify outer loop break": request 6000 on
  `[1g.5gb 5120, 2g.10gb 10240]` picks template 0, entry 1).
- The pod then takes the FIRST free slot, lowest index, with `Memory >= Memreq` (`>=`, nominal config
  memory; `TestCustomFilterRule_Mig`, `TestAddResourceUsage_MigNonReset`). A busy GPU keeps its
  template until its last pod ends.
- GPUs are tried in the order of `hami_order.py` (first fit by index unless `order` says `spread`
  or `binpack`, HAMi's own policies) after `Fit`'s pre-checks (slot count, free memory, cores),
  each modelled as written.
- NVML cost: the device plugin (`pkg/device-plugin/nvidiadevice/nvinternal/plugin/util.go`
  `GenerateMigTemplate`, `ApplyMigTemplate`) runs `nvidia-mig-parted apply` when the template's
  profile counts differ from the GPU's current ones: every old instance is destroyed and every
  slot of the new template created. Instances are never released per pod.

HAMi <= v2.6 (v2.5.0, v2.6.0 `CustomFilterRule`) differs in two comparisons, kept as a separate
row: the template is the first whose FIRST entry has `templates[0].Memory >= Memreq` (a 2-slice
request skips `1x 1g + 3x 2g` and lands on `2x 3g`), and a slot must be STRICTLY larger
(`Memory > Memreq`; a pod asking exactly a whole GPU is never admitted). v2.7 switched to `>=`,
v2.8 to any entry.

The model is generous to HAMi in one way: the GPU model is matched to its table entry correctly
(HAMi's `strings.Contains(val.Type, model)` finds no entry for "NVIDIA H100 80GB HBM3").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries, ResolvedGeometry
from hami_mig.mig.layout import for_model

from .hami_order import DeviceUsage, GpuPolicy, visit_order
from .scheme import Admission, DecisionClock, Placement
from .workload import Pod

SPLIT_COUNT = 10  # deviceSplitCount: the Helm chart's default, the device's `Count`
TOTAL_CORES = 100  # `Devcore` of a MIG-mode GPU


@dataclass
class _Gpu:
    geometry: int | None = None  # position in the resolved list while any slot is in use
    busy: list[bool] = field(default_factory=list)
    on_hardware: int | None = None  # geometry whose instances exist on the GPU


class HamiGeometries:
    """HAMi's template walk with the whole-GPU geometry lock; `first_entry` + `strict` give the <= v2.6 rules."""

    def __init__(
        self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries, *,
        first_entry: bool = False, strict: bool = False, order: GpuPolicy = "index",
    ) -> None:
        self.name = name
        self.model = model
        self.first_entry = first_entry  # <= v2.6: only a template's first entry is compared
        self.strict = strict  # <= v2.6: a slot must be strictly larger than the request
        self.order: GpuPolicy = order
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
        self.tier_exact = False  # nominal memory: the fit can change inside a real-memory tier

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        found = self._find(pod.gpumem)
        self.clock.add(time.perf_counter() - t0)
        if found is None:
            return None
        index, geo, slot = found
        ops = self._take(self.gpus[index], geo, slot)
        self.holder[pod.id] = (index, slot)
        profile = self.geometries[geo].slots[slot].profile
        return Admission(index, profile.name, profile.memory_slices, profile.memory_mib, ops)

    def usage(self, gpu: _Gpu) -> DeviceUsage:
        slots = self.geometries[gpu.geometry].slots if gpu.geometry is not None else ()
        held = [s for s in slots if gpu.busy[s.index]]
        return DeviceUsage(len(held), SPLIT_COUNT, sum(s.core for s in held), TOTAL_CORES,
                           sum(s.nominal_memory for s in held), self.model.total_memory_mib)

    def _find(self, gpumem: int) -> tuple[int, int, int] | None:
        """(GPU, geometry, slot) of HAMi's first fit, or None."""
        usages = [self.usage(g) for g in self.gpus]
        for index in visit_order(usages, self.order):
            if not usages[index].passes_prechecks(gpumem):
                continue
            gpu = self.gpus[index]
            geo = gpu.geometry if gpu.geometry is not None else self.template_for(gpumem)
            if geo is None:
                continue
            slot = self.slot_for(geo, gpu.busy if gpu.geometry is not None else None, gpumem)
            if slot is not None:
                return index, geo, slot
        return None

    def template_for(self, gpumem: int) -> int | None:
        """The template an idle GPU gets: the first with a (first, for <= v2.6) entry >= the request."""
        for pos, geo in enumerate(self.geometries):
            entries = geo.slots[:1] if self.first_entry else geo.slots
            if any(s.nominal_memory >= gpumem for s in entries):
                return pos
        return None

    def slot_for(self, geo: int, busy: list[bool] | None, gpumem: int) -> int | None:
        """The first free slot whose nominal memory is >= (<= v2.6: >) the request."""
        for s in self.geometries[geo].slots:
            if busy is not None and busy[s.index]:
                continue
            if s.nominal_memory > gpumem or (not self.strict and s.nominal_memory == gpumem):
                return s.index
        return None

    def _take(self, gpu: _Gpu, geo: int, slot: int) -> int:
        ops = 0
        if gpu.geometry is None:
            gpu.geometry = geo
            gpu.busy = [False] * len(self.geometries[geo].slots)
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
