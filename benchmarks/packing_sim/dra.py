"""Kubernetes DRA for MIG, as the scheduler sees it: partitions, shared counters, first fit.

On a DRA cluster (resource.k8s.io/v1, Kubernetes 1.34+, partitionable devices of KEP-4815) a MIG
driver publishes one `Device` per (GPU, profile, placement) in ResourceSlices; every device
`consumesCounters` from its GPU's `sharedCounters` set, and kube-scheduler's structured allocator
allocates a device only while every counter it consumes stays within the set's capacity (on top
of the devices already allocated). It does not score: it walks the pool's slices in order, each
slice's `devices` in order, and takes the FIRST device that is not allocated, matches the
request's selectors and fits the counters (k8s.io/dynamic-resource-allocation
structured/internal/{stable,incubating,experimental}, `allocator.allocateOne`: `for _, pool :=
range alloc.pools { for _, slice := range pool.Slices { for deviceIndex := range
slice.Spec.Devices {`; counters in `checkAvailableCounters`; tags v0.34.0 .. v0.36.0).

Modelled here, per GPU (NVIDIA's `PartSharedCounterSets`, cmd/gpu-kubelet-plugin/partitions.go,
k8s-dra-driver-gpu v25.12.0): one counter per memory slice (capacity 1; a placement consumes the
slices it covers), plus three counters standing in for NVIDIA's capacity counters, each with the
largest value any profile has as capacity: `compute` (compute slices; NVIDIA counts
multiprocessors and copy engines), `memory` (MiB) and `media` (1; consumed only by `+me`
profiles, as NVIDIA's jpegEngines/ofaEngines counters are: so a GPU holds at most one `+me`
instance). On the modelled GPUs only the memory-slice and media counters ever bind.

A pod asking for `gpumem` MiB is a claim with one request of the `mig.nvidia.com` DeviceClass
(`device.attributes['gpu.nvidia.com'].type == 'mig'`, which excludes the whole-GPU device) and the
selector `device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('<gpumem>Mi')) >= 0`: a
device matches when its profile's REAL memory (NVML memorySizeMB) is >= gpumem.

`DraFirstFit` is NVIDIA's DynamicMIG driver under that allocator (see its docstring for the order).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.layout import profile_mask

from .scheme import Admission, DecisionClock, Placement
from .workload import Pod

GpuOrder = Literal["index", "random"]
MEDIA_CAPACITY = 1


@dataclass(frozen=True)
class Device:
    """One published partition: a profile at a placement on one GPU."""

    gpu: int
    profile: Profile
    start: int
    name: str

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.gpu, self.profile.name, self.start)

    @property
    def mask(self) -> int:
        return profile_mask(self.profile, self.start)

    @property
    def media(self) -> int:
        return 1 if self.profile.media_extension else 0


class CounterSet:
    """One GPU's shared counters and what the allocated devices consume of them."""

    def __init__(self, model: GpuModel) -> None:
        self.compute_capacity = max(p.compute_slices for p in model.profiles)
        self.memory_capacity = max(p.memory_mib for p in model.profiles)
        self.slices = 0  # bit i set: memory-slice-i consumed
        self.compute = 0
        self.memory = 0
        self.media = 0

    def fits(self, device: Device) -> bool:
        """checkAvailableCounters: every counter stays within its capacity once the device is added."""
        return (
            not self.slices & device.mask
            and self.compute + device.profile.compute_slices <= self.compute_capacity
            and self.memory + device.profile.memory_mib <= self.memory_capacity
            and self.media + device.media <= MEDIA_CAPACITY
        )

    def consume(self, device: Device) -> None:
        if not self.fits(device):
            raise AssertionError(f"{device.name} does not fit the counters left on GPU {device.gpu}")
        self.slices |= device.mask
        self.compute += device.profile.compute_slices
        self.memory += device.profile.memory_mib
        self.media += device.media

    def give_back(self, device: Device) -> None:
        self.slices &= ~device.mask
        self.compute -= device.profile.compute_slices
        self.memory -= device.profile.memory_mib
        self.media -= device.media


class Allocated:
    """The devices the scheduler counts as allocated on one node, with each GPU's counter set."""

    def __init__(self, model: GpuModel, gpus: int) -> None:
        self.counters = [CounterSet(model) for _ in range(gpus)]
        self.devices: dict[tuple[int, str, int], Device] = {}

    def take(self, device: Device) -> None:
        self.counters[device.gpu].consume(device)
        self.devices[device.key] = device

    def drop(self, device: Device) -> None:
        del self.devices[device.key]
        self.counters[device.gpu].give_back(device)

    def placements(self, gpus: int) -> list[list[Placement]]:
        out: list[list[Placement]] = [[] for _ in range(gpus)]
        for gpu, profile, start in sorted(self.devices):
            out[gpu].append((profile, start))
        return out


def first_fit(devices: Iterable[Device], gpumem: int, allocated: Allocated) -> Device | None:
    """The structured allocator's pick for one device: the first listed, unallocated, matching device that fits."""
    for device in devices:
        if device.key in allocated.devices:
            continue  # deviceInUse
        if device.profile.memory_mib < gpumem:
            continue  # the CEL memory selector
        if allocated.counters[device.gpu].fits(device):
            return device
    return None


# --------------------------------------------------------------------------- NVIDIA's advertised order

_NOT_RFC1123 = re.compile(r"[^a-z0-9-.]")


def _rfc1123(name: str) -> str:
    """toRFC1123Compliant (cmd/gpu-kubelet-plugin/mig.go, v25.12.0)."""
    name = _NOT_RFC1123.sub("-", name.lower()).strip("-").removesuffix(".")
    return name[:253]


def canonical_name(gpu: int, profile: Profile, start: int) -> str:
    """NVIDIA's device name `gpu-<minor>-mig-<profile>-<GI profile id>-<start>` (MigSpecTuple.ToCanonicalName)."""
    pname = _rfc1123(profile.name.replace(".", ""))
    return f"gpu-{gpu}-mig-{pname}-{profile.smi_profile_id}-{start}"


def nvidia_devices(model: GpuModel, gpu: int) -> list[Device]:
    """Every profile at every placement of one GPU, in the order NVIDIA's slice lists them (name, bytewise)."""
    devices = [Device(gpu, p, s, canonical_name(gpu, p, s)) for p in model.profiles for s in p.starts]
    return sorted(devices, key=lambda d: d.name.encode())


class DraFirstFit:
    """NVIDIA's DRA driver (DynamicMIG) under kube-scheduler's structured allocator.

    Published (k8s-dra-driver-gpu, feature gate DynamicMIG, PR #852 merged as 4440980e, first
    released in v25.12.0; cmd/gpu-kubelet-plugin): one ResourceSlice per GPU, GPUs in ascending
    minor (`generateCombinedResourceSlices`/`generateSplitResourceSlices` in driver.go iterate
    `slices.Sorted(maps.Keys(perGPUAllocatable))`), each listing the whole GPU `gpu-<minor>` and
    every MIG profile NVML reports at every placement (`inspectMigProfilesAndPlacements` in
    nvlib.go), sorted by device name with Go's bytewise string order
    (`slices.Sorted(maps.Keys(allocatable))`); the names come from `ToCanonicalName` in mig.go
    (`gpu-%d-mig-%s-%d-%d`: minor, profile name without dots and `+` turned into `-`, GI profile
    id, placement start). The list never changes: the instance is created in
    NodePrepareResources (`createMigDevice`) and destroyed in NodeUnprepareResources
    (`deleteMigDevice`), so every admission costs 2 NVML operations (both counted at admission).

    Rules of this scheme: GPUs are walked in index order (`order="index"`: the allocator walks
    slices in name order from Kubernetes 1.36, when the resourceslice controller names slices by
    their index in the driver's list) or in a fresh random order for every pod (`order="random"`:
    Kubernetes 1.34/1.35, where the allocator takes the pool's slices in the informer's order,
    which is not deterministic); within a GPU, devices in the bytewise order of their names; the
    whole-GPU device is not eligible (mig.nvidia.com class); the pod gets the first device whose
    real memory >= gpumem, that is not allocated and whose counters fit.
    """

    def __init__(self, name: str, model: GpuModel, gpus: int, order: GpuOrder = "index", seed: int = 0) -> None:
        self.name = name
        self.model = model
        self.gpus = gpus
        self.order: GpuOrder = order
        self.rng = random.Random(seed)
        self.per_gpu = [nvidia_devices(model, g) for g in range(gpus)]
        self.allocated = Allocated(model, gpus)
        self.holder: dict[int, Device] = {}
        self.clock = DecisionClock()
        self.tier_exact = True  # the memory selector only sees which profiles cover the request

    def walk(self) -> Iterable[Device]:
        gpus: Sequence[int] = range(self.gpus)
        if self.order == "random":
            gpus = self.rng.sample(range(self.gpus), self.gpus)
        for g in gpus:
            yield from self.per_gpu[g]

    def admit(self, pod: Pod) -> Admission | None:
        t0 = time.perf_counter()
        device = first_fit(self.walk(), pod.gpumem, self.allocated)
        self.clock.add(time.perf_counter() - t0)
        if device is None:
            return None
        self.allocated.take(device)
        self.holder[pod.id] = device
        p = device.profile
        return Admission(device.gpu, p.name, p.memory_slices, p.memory_mib, 2)

    def release(self, pod: Pod) -> None:
        self.allocated.drop(self.holder.pop(pod.id))

    def in_use(self) -> list[list[Placement]]:
        return self.allocated.placements(self.gpus)
