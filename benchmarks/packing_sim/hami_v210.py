"""HAMi v2.10's dynamic MIG (per-instance NVML placement), modelled from its v2.10.0 source.

v2.10.0 dropped `knownMigGeometries` for a profile allowlist and exact NVML placements:

- Profiles: the `migProfileAllowlist` of the Helm chart's device config
  (`charts/hami/templates/scheduler/device-configmap.yaml`; A100-80GB: `1g.10gb, 2g.20gb, 3g.40gb,
  7g.79gb`). The device plugin keys each name by its slice prefix only (`migmgr.go`
  `profileSliceKey`, `profileNameToGIProfileID`: "1g" -> `GPU_INSTANCE_PROFILE_1_SLICE`) and
  reports NVML's real memory, slice count and placements (`register.go` `discoverMigProfiles`).
- Per GPU (`pkg/device/nvidia/device.go` `selectMigCandidate`): profiles sorted by `MemoryMB`,
  then `SliceCount` (stable); the first with `MemoryMB >= request` that has a free placement wins
  (a smaller profile with no room is skipped for a larger one: `continue`, not a refusal).
- Placement (`mig_topology.go` `orderedMigPlacements`, `selectMigPlacement`): `1g.*` and `3g.*`
  try the HIGHEST start first, every other profile the lowest; the first placement overlapping no
  running allocation is taken. HAMi's `TestSelectMigPlacementUsesBalancedPacking`: 3g -> 4,
  2g -> 0, 1g -> 3, 1g -> 2. No per-profile count check beyond the placements NVML lists.
- GPUs: `Fit`'s pre-checks and HAMi's device order (`hami_order.py`), with `Count` = the largest
  profile `InstanceCount` and cores = `ceil(SMs x 100 / full-GPU SMs)` per profile (taken here
  as compute slices / the GPU's compute slices, the same ratio on A100 and within a point on H100).
- NVML cost: the device plugin creates the GI + CI at the reserved placement on Allocate
  (`migmgr.go` `EnsureAllocation`) and its 5 s reconciler destroys it once the pod is gone
  (`server.go` `runMigAnnotationReconciler` -> `ReconcileActiveAllocations`): one create and one
  destroy per pod, counted at admission (2 per admitted pod). An instance is never handed to
  another pod; the model destroys it at the pod's end (a pod bound to the same placement within
  the reconciler's 5 s would get the tracked instance back, which this model does not count).

Generous to HAMi as the v2.9 model: the GPU model is matched to its allowlist entry correctly
(HAMi's substring match finds none for "NVIDIA H100 80GB HBM3").
"""

from __future__ import annotations

import math
import time

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.layout import mask

from .hami_order import DeviceUsage, GpuPolicy, visit_order
from .scheme import Admission, DecisionClock, Placement
from .workload import Pod

TOTAL_CORES = 100
# profileNameToGIProfileID in migmgr.go, by slice prefix -> NVML GPU_INSTANCE_PROFILE_* enum
GI_PROFILE_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
# the chart's allowlist, by slice prefix (the same four on every 7-slice model it names)
ALLOWLIST_SLICES = (1, 2, 3, 7)


def allowlist_profiles(model: GpuModel, slices: tuple[int, ...] = ALLOWLIST_SLICES) -> tuple[Profile, ...]:
    """The profiles the v2.10 device plugin reports: one per allowed slice prefix, by NVML enum."""
    out = []
    for n in slices:
        enum = GI_PROFILE_BY_SLICES[n]
        hit = next((p for p in model.plannable if p.nvml_profile_id == enum), None)
        if hit is not None:
            out.append(hit)
    return tuple(out)


def candidate_order(profiles: tuple[Profile, ...]) -> tuple[Profile, ...]:
    """`selectMigCandidate`'s order: MemoryMB, then SliceCount (GPU slices), stable."""
    return tuple(sorted(profiles, key=lambda p: (p.memory_mib, p.compute_slices)))


def placement_order(profile: Profile) -> tuple[int, ...]:
    """`orderedMigPlacements`: highest start first for 1g.* and 3g.*, lowest first otherwise."""
    high = profile.name.startswith(("1g.", "3g."))
    return tuple(sorted(profile.starts, reverse=high))


class HamiV210:
    """HAMi v2.10: smallest allowed profile with a free placement, created per pod, destroyed after."""

    def __init__(self, name: str, model: GpuModel, gpus: int, order: GpuPolicy = "index",
                 profiles: tuple[Profile, ...] | None = None) -> None:
        self.name = name
        self.model = model
        self.order: GpuPolicy = order
        self.profiles = candidate_order(profiles if profiles is not None else allowlist_profiles(model))
        self.count = max(p.max_count for p in self.profiles)
        self.starts = {p.name: placement_order(p) for p in self.profiles}
        self.cores = {p.name: math.ceil(p.compute_slices * TOTAL_CORES / model.compute_slices) for p in self.profiles}
        self.held: list[dict[int, tuple[Profile, int]]] = [{} for _ in range(gpus)]  # pod id -> placement
        self.where: dict[int, int] = {}
        self.clock = DecisionClock()
        self.tier_exact = True  # real memory: the answer depends on the request only through its tier

    def usage(self, gpu: int) -> DeviceUsage:
        held = self.held[gpu].values()
        return DeviceUsage(len(held), self.count, sum(self.cores[p.name] for p, _ in held), TOTAL_CORES,
                           sum(p.memory_mib for p, _ in held), self.model.total_memory_mib)

    def select(self, gpu: int, gpumem: int) -> tuple[Profile, int] | None:
        """`selectMigCandidate` on one GPU: (profile, start) or None."""
        occupied = 0
        for p, start in self.held[gpu].values():
            occupied |= mask(start, p.memory_slices)
        for profile in self.profiles:
            if profile.memory_mib < gpumem:
                continue
            for start in self.starts[profile.name]:
                if not mask(start, profile.memory_slices) & occupied:
                    return profile, start
        return None

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        found: tuple[int, Profile, int] | None = None
        usages = [self.usage(g) for g in range(len(self.held))]
        for gpu in visit_order(usages, self.order):
            if not usages[gpu].passes_prechecks(pod.gpumem):
                continue
            hit = self.select(gpu, pod.gpumem)
            if hit is not None:
                found = (gpu, *hit)
                break
        self.clock.add(time.perf_counter() - t0)
        if found is None:
            return None
        gpu, profile, start = found
        self.held[gpu][pod.id] = (profile, start)
        self.where[pod.id] = gpu
        return Admission(gpu, profile.name, profile.memory_slices, profile.memory_mib, 2)  # create now, destroy at end

    def release(self, pod: Pod) -> None:
        del self.held[self.where.pop(pod.id)][pod.id]

    def in_use(self) -> list[list[Placement]]:
        return [[(p.name, s) for p, s in held.values()] for held in self.held]
