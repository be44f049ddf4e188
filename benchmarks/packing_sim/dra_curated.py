"""hami-mig's planner behind DRA: publish only the placements the planner would choose, best first.

The driver cannot score inside kube-scheduler, so it shapes what the allocator's first fit sees
(`dra.first_fit`). At each republish it computes, from the GPUs as they are (in-use and free
instances), a *curated list* with the REAL planner (`hami_mig.mig.planner.decide`, policy
best-fit, geometries any, the same call `PlannerScheme` makes, and `apply_decision`):

- for every size tier T (the distinct real memories of the plannable profiles, ascending) and
  rank j = 1..depth: the planner's allocation for a request of exactly T MiB on the GPUs as they
  are after its rank 1..j-1 allocations of that tier were applied (so rank j is where the j-th of
  several pods of that tier would go); a tier stops at its first refusal;
- the entries sorted by (the profile's real memory, rank, tier), duplicates (same GPU, profile,
  start) keeping their first place; then every device allocated at republish time and not
  listed yet, by (GPU, profile name, start) (listed so that the scheduler counts their counters;
  skipped while allocated, usable again once freed).

For a request of tier t the covering profiles are those with memory >= T_t, so the planner's
answer is the same for every request of the tier, and with a fresh list the first unallocated
listed device with memory >= the request is exactly the planner's rank-1 choice for the tier:
first fit lands on best fit. A device picked from the list is realised like the planner's own
plans: an existing free instance at that placement is reused, otherwise the free (not in-use)
instances it overlaps are destroyed and it is created; a departure leaves the instance free.

Refresh policies: fresh = republish after every admission and every departure (depth 1); lag K =
republish only after the K-th admission since the last republish (depth K), never on a departure,
so the list shows the GPUs as they were at that admission; lag K with departures republished =
after every departure and after the K-th admission since the last republish.
Pods placed between republishes meet a stale list, whose consumed entries the allocator skips
(allocated) or rejects (counters), falling through to the next entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.plan import Allocation, Decision, Operation
from hami_mig.mig.planner import apply_decision, decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState

from .dra import Allocated, Device, canonical_name, first_fit, nvidia_devices
from .planned import PlannerScheme
from .scheme import Admission
from .workload import Pod, tier_sizes

Planner = Callable[[Sequence[GpuState], int], Decision]


def curated_list(model: GpuModel, gpus: Sequence[GpuState], depth: int, plan: Planner) -> list[Device]:
    """The planner-ranked devices of the module docstring (without the allocated tail)."""
    ranked: list[tuple[tuple[int, int, int], Device]] = []
    for tier, size in enumerate(tier_sizes(model)):
        state = list(gpus)
        for rank in range(depth):
            decision = plan(state, size)
            if not decision.fits:
                break
            a = decision.allocations[0]
            profile = model.profile(a.profile)
            device = Device(a.gpu_index, profile, a.start, canonical_name(a.gpu_index, profile, a.start))
            ranked.append(((profile.memory_mib, rank, tier), device))
            state = apply_decision(state, decision)
    out: list[Device] = []
    seen: set[tuple[int, str, int]] = set()
    for _key, device in sorted(ranked, key=lambda kv: kv[0]):
        if device.key not in seen:
            seen.add(device.key)
            out.append(device)
    return out


def realize(gpu: GpuState, device: Device) -> Decision:
    """NodePrepareResources for a listed device: reuse a free instance there, else clear free overlaps and create."""
    p = device.profile
    reuse = next((i for i in gpu.free() if i.key() == (p.name, device.start)), None)
    allocation = Allocation(gpu.index, gpu.uuid, p.name, device.start, p.memory_mib, reuse is not None,
                            uuid=reuse.uuid if reuse is not None else None)
    if reuse is not None:
        return Decision(True, (allocation,))
    lay = for_model(gpu.model)
    m = profile_mask(p, device.start)
    ops = [Operation("destroy", gpu.index, i.profile, i.start, gpu.uuid)
           for i in gpu.free() if lay.occupied([i.key()]) & m]
    ops.append(Operation("create", gpu.index, p.name, device.start, gpu.uuid))
    return Decision(True, (allocation,), tuple(ops))


class DraCurated(PlannerScheme):
    """A hami-mig DRA driver publishing planner-curated lists (module docstring).

    `lag` = K: republish after every K-th admission (depth K); `departures`: republish after every
    departure too. (1, True) is the fresh variant; (K, False) republishes only every K admissions.
    """

    def __init__(self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries,
                 lag: int = 1, departures: bool = True) -> None:
        super().__init__(name, model, gpus, geometries, "best-fit", "any")
        if lag < 1:
            raise ValueError(f"lag {lag}: republish after every K >= 1 admissions")
        self.lag = lag
        self.departures = departures
        self.allocated = Allocated(model, gpus)
        self.devices: dict[int, Device] = {}  # pod id -> its device
        self.published: list[Device] = []
        self.stale = True  # a republish is due before the next pod is placed
        self.since_republish = 0  # admissions since the last republish
        self.republishes = 0  # ResourceSlice republishes a real driver would make (one per trigger)
        self.listed = 0  # devices listed, summed over the lists computed
        self.computed = 0  # lists computed (a run of triggers without a pod in between computes one)
        self.admissions = 0

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        if self.stale:
            self._republish()
        device = first_fit(self.published, pod.gpumem, self.allocated)
        self.clock.add(time.perf_counter() - t0)
        if device is None:
            return None
        admission = self.carry_out(pod, realize(self.gpus[device.gpu], device))
        self.allocated.take(device)
        self.devices[pod.id] = device
        self.admissions += 1
        self.since_republish += 1
        if self.since_republish >= self.lag:
            self._trigger()
            if not self.departures:
                self._republish()  # the list must show this moment, not departures before the next pod
        return admission

    def release(self, pod: Pod) -> None:
        super().release(pod)
        self.allocated.drop(self.devices.pop(pod.id))
        if self.departures:
            self._trigger()

    def _trigger(self) -> None:
        """A republish is due. Computed lazily at the next pod: exact, since when departures are not
        republished the admission that triggers computes the list at once (see `admit`)."""
        self.stale = True
        self.republishes += 1

    def _decide(self, gpus: Sequence[GpuState], gpumem: int) -> Decision:
        """The planner call `PlannerScheme.plan` makes, untimed (the whole republish is timed per pod)."""
        return decide(gpus, Request(memory_mib=gpumem), self.lookup, self.policy, self.mode)

    def _republish(self) -> None:
        curated = curated_list(self.model, self.gpus, self.lag, self._decide)
        listed = {d.key for d in curated}
        tail = [d for _k, d in sorted(self.allocated.devices.items()) if d.key not in listed]
        self.published = curated + tail
        self.listed += len(self.published)
        self.computed += 1
        self.stale = False
        self.since_republish = 0


class DraStaticOrder(DraCurated):
    """A hami-mig driver with a static list: smallest real memory first, then NVIDIA's order.

    Every plannable profile (no `+me`) at every placement of every GPU; GPUs in index order, within
    a GPU by (real memory, device name bytewise). Published once; devices are realised like the
    curated ones (a free instance is reused, free overlaps destroyed), so no republish is needed.
    """

    def __init__(self, name: str, model: GpuModel, gpus: int, geometries: GpuGeometries) -> None:
        super().__init__(name, model, gpus, geometries)
        self.published = [
            d for g in range(gpus)
            for d in sorted(nvidia_devices(model, g), key=lambda d: (d.profile.memory_mib, d.name.encode()))
            if not d.profile.media_extension
        ]
        self.stale = False

    def _trigger(self) -> None:
        """The list never changes."""
