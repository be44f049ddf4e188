"""The simulated driver's MIG rules: placement legality, GI ids, auto placement, CIs and MIG device order.

Follows docs `mig-hardware.md` sections C and E. Every refusal raises pynvml's own NVMLError with the
code the real driver returns.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from typing import Any

import pynvml

from hami_mig.mig.catalogue import GpuModel, Profile, default_catalogue
from hami_mig.testing.nvmlsim.spec import stable_uuid
from hami_mig.testing.nvmlsim.state import SimCi, SimGi, SimGpu, SimState

# CI profile enum -> compute slices (NVML_COMPUTE_INSTANCE_PROFILE_1/2/3/4/7_SLICE; 8, 6 and REV1 not on these GPUs).
CI_SLICES = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7}


def fail(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


@cache
def model_of(name: str) -> GpuModel:
    return default_catalogue().lookup(name)


def gpu_model(gpu: SimGpu) -> GpuModel:
    """The profile table this GPU's driver reports: the catalogue's, changed by any drift a test set on it."""
    if not gpu.profile_drift:
        return model_of(gpu.model)
    return _drifted(gpu.model, json.dumps(gpu.profile_drift, sort_keys=True))


@cache
def _drifted(name: str, drift_json: str) -> GpuModel:
    base, drift = model_of(name), json.loads(drift_json)
    profiles = []
    for p in base.profiles:
        change = drift.get(p.name, {})
        if change.get("absent"):
            continue
        profiles.append(replace(p, memory_mib=int(change.get("memory_mib", p.memory_mib)),
                                max_count=int(change.get("max_count", p.max_count)),
                                starts=tuple(int(s) for s in change.get("starts", p.starts))))
    return replace(base, profiles=tuple(profiles))


def total_memory_mib(model: GpuModel) -> int:
    return model.memory_mib if model.memory_mib is not None else model.largest.memory_mib + 768


def by_enum(model: GpuModel, enum: int) -> Profile:
    if not 0 <= enum < pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT:
        raise fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    for p in model.profiles:
        if p.nvml_profile_id == enum:
            return p
    raise fail(pynvml.NVML_ERROR_NOT_SUPPORTED)


def fill_placements(array: Any, count: Any, p: Profile) -> None:
    """Write a profile's placements into a caller's ctypes array (too short: INSUFFICIENT_SIZE) and its count."""
    if len(array) < len(p.starts):
        raise fail(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
    for i, start in enumerate(p.starts):
        array[i].start = start
        array[i].size = p.memory_slices
    count.value = len(p.starts)


def by_id(model: GpuModel, profile_id: int) -> Profile:
    for p in model.profiles:
        if p.smi_profile_id == profile_id:
            return p
    raise fail(pynvml.NVML_ERROR_NOT_SUPPORTED)


def gi_profile(model: GpuModel, gi: SimGi) -> Profile:
    return by_enum(model, gi.profile)


def _slices(model: GpuModel, gi: SimGi) -> set[int]:
    return set(gi_profile(model, gi).slices(gi.start))


def refusal(gpu: SimGpu, model: GpuModel, profile: Profile, start: int) -> int | None:
    """Why profile@start cannot be created now (an NVML code), or None. Placement validity checked by caller."""
    taken: set[int] = set()
    for gi in gpu.gis:
        taken |= _slices(model, gi)
    if taken & set(profile.slices(start)):
        return int(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    if sum(1 for gi in gpu.gis if gi.profile == profile.nvml_profile_id) >= profile.max_count:
        return int(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    if profile.media_extension and any(gi_profile(model, gi).media_extension for gi in gpu.gis):
        return int(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)  # one media-engine set per GPU
    return None


def auto_order(model: GpuModel, profile: Profile) -> list[int]:
    """Driver policy for placement-less creates: empty A100/H100 put 1g at 6,4,5,0,1,2,3, a first 2g at 4 [C];
    other sizes highest start first [I]; 4-slice A30 fills from 0 [C]."""
    if model.memory_slices <= 4:
        return sorted(profile.starts)
    if profile.memory_slices == 1:
        preferred = [6, 4, 5, 0, 1, 2, 3]
        return [s for s in preferred if s in profile.starts] + [s for s in profile.starts if s not in preferred]
    return sorted(profile.starts, reverse=True)


def remaining_capacity(gpu: SimGpu, model: GpuModel, profile: Profile) -> int:
    """How many more of `profile` fit now (greedy over its aligned placements, capped by the max count)."""
    scratch = SimGpu(gpu.index, gpu.uuid, gpu.model, gis=list(gpu.gis))
    n = 0
    for start in sorted(profile.starts):
        if refusal(scratch, model, profile, start) is None:
            scratch.gis.append(SimGi(-1, -1, profile.nvml_profile_id, start))
            n += 1
    return n


def _gi_id(state: SimState, gpu: SimGpu, model: GpuModel, profile: Profile, start: int) -> int:
    used = {gi.id for gi in gpu.gis}
    if state.gi_ids == "heap":  # older A100/H100: 1g@s -> 7+s, 2g@s -> 3+s/2, 4-slice@s -> 1+s/4, whole -> 0
        size = profile.memory_slices
        gi_id = model.memory_slices // size - 1 + start // size
        if gi_id not in used:
            return gi_id
    return next(i for i in range(1, 64) if i not in used)


def create_gi(state: SimState, gpu: SimGpu, profile: Profile, start: int | None, size: int | None = None) -> SimGi:
    model = gpu_model(gpu)
    if start is None:
        start = next((s for s in auto_order(model, profile) if refusal(gpu, model, profile, s) is None), None)
        if start is None:
            raise fail(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    elif start not in profile.starts or size != profile.memory_slices:
        raise fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    code = refusal(gpu, model, profile, start)
    if code is not None:
        raise fail(code)
    gi = SimGi(state.serial(), _gi_id(state, gpu, model, profile, start), profile.nvml_profile_id, start)
    gpu.gis.append(gi)
    return gi


def destroy_gi(gpu: SimGpu, gi: SimGi) -> None:
    if gi.cis:
        raise fail(pynvml.NVML_ERROR_IN_USE)
    gpu.gis.remove(gi)


def ci_profiles(gi_profile: Profile) -> dict[int, int]:
    """CI enum -> slices offered inside a GI of this profile."""
    return {e: s for e, s in CI_SLICES.items() if s <= gi_profile.compute_slices}


def ci_slices(gi_profile: Profile, enum: int) -> int:
    if not 0 <= enum < pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT:
        raise fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    offered = ci_profiles(gi_profile)
    if enum not in offered:
        raise fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return offered[enum]


def ci_starts(gi_profile: Profile, size: int) -> list[int]:
    step = 4 if size == 3 else size
    return [s for s in range(0, gi_profile.compute_slices - size + 1, step)]


def ci_capacity(gi: SimGi, gi_profile: Profile, enum: int) -> int:
    size = ci_slices(gi_profile, enum)
    taken = {s for ci in gi.cis for s in range(ci.start, ci.start + ci.size)}
    n = 0
    for start in ci_starts(gi_profile, size):
        if not taken & set(range(start, start + size)):
            taken |= set(range(start, start + size))
            n += 1
    return min(n, gi_profile.compute_slices // size - sum(1 for ci in gi.cis if ci.profile == enum))


def create_ci(state: SimState, gi: SimGi, gi_profile: Profile, enum: int) -> SimCi:
    size = ci_slices(gi_profile, enum)
    taken = {s for ci in gi.cis for s in range(ci.start, ci.start + ci.size)}
    start = next((s for s in ci_starts(gi_profile, size) if not taken & set(range(s, s + size))), None)
    if start is None or ci_capacity(gi, gi_profile, enum) <= 0:
        raise fail(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    used = {ci.id for ci in gi.cis}
    serial = state.serial()
    ci = SimCi(serial, next(i for i in range(64) if i not in used), enum, start, size,
               f"MIG-{stable_uuid(state.seed, 'mig', serial)}")
    gi.cis.append(ci)
    return ci


def destroy_ci(gi: SimGi, ci: SimCi) -> None:
    if ci.processes:
        raise fail(pynvml.NVML_ERROR_IN_USE)
    gi.cis.remove(ci)


def max_mig_devices(gpu: SimGpu) -> int:
    if gpu.mig_current != 1:
        return 0
    return max(p.max_count for p in model_of(gpu.model).profiles)


def mig_device_slots(gpu: SimGpu) -> dict[int, tuple[SimGi, SimCi]]:
    """MIG device index -> (GI, CI): ordered by (GI id, CI id) like nvidia-smi, skipping configured holes."""
    ordered = sorted(((gi, ci) for gi in gpu.gis for ci in gi.cis), key=lambda p: (p[0].id, p[1].id))
    slots: dict[int, tuple[SimGi, SimCi]] = {}
    index = 0
    for pair in ordered:
        while index in gpu.mig_index_holes:
            index += 1
        slots[index] = pair
        index += 1
    return slots
