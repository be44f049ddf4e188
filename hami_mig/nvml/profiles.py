"""Read a GPU's MIG profile table from NVML, because on a node NVML's memory and placements beat the catalogue."""

from __future__ import annotations

import ctypes
import math
import re
from typing import Any

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import c_call, versioned_info

# GI profile enums whose names carry a media-engine suffix (go-nvlib's naming).
_SUFFIX = {7: "+me", 8: "+me", 13: "-me", 14: "-me", 15: "+me.all", 16: "+me.all", 10: "+gfx", 11: "+gfx",
           12: "+gfx", 17: "+gfx"}
_MIG_PREFIX = re.compile(r"^MIG\s+")
MAX_MEMORY_SLICES = 8  # MIG GPUs so far have at most 8 memory slices


def decode(value: object) -> str:
    """ctypes char arrays read back as bytes; pynvml's string getters already return str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return str(value)


def derive_profile_name(enum: int, compute_slices: int, memory_mib: int, total_mib: int) -> str:
    """go-nvlib's `<c>g.<m>gb` for drivers whose profile info has no name (v1 struct)."""
    if total_mib <= 0:
        return f"{compute_slices}g.{memory_mib // 1024}gb{_SUFFIX.get(enum, '')}"
    eighths = math.ceil(8 * memory_mib / total_mib)
    gb = math.floor(eighths / 8 * math.ceil(total_mib / 1024) + 0.5)  # Go's math.Round: halves away from zero
    return f"{compute_slices}g.{gb}gb{_SUFFIX.get(enum, '')}"


def profile_name(info: Any, enum: int, total_mib: int) -> str:
    """`MIG 1g.10gb` -> `1g.10gb`; derived when the struct has no name."""
    raw = decode(getattr(info, "name", b"")).strip()
    if raw:
        return _MIG_PREFIX.sub("", raw)
    return derive_profile_name(enum, int(info.sliceCount), int(info.memorySizeMB), total_mib)


def gi_profile_info(nvml: Any, handle: Any, enum: int) -> Any:
    """v2 profile info (has the name); falls back to v1 on drivers without `…ProfileInfoV` (before R510)."""
    return versioned_info(nvml, nvml.nvmlDeviceGetGpuInstanceProfileInfo, handle, enum)


def ci_profile_info(nvml: Any, gi: Any, enum: int) -> Any:
    """The same for compute-instance profiles; callers read only id, sliceCount and instanceCount (v1 has them)."""
    return versioned_info(nvml, nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo, gi, enum,
                          nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)


def possible_placements(nvml: Any, handle: Any, profile_id: int) -> list[tuple[int, int]]:
    """(start, size) pairs the driver allows for a profile (takes info.id, not the enum); count first, like go-nvml."""
    count = ctypes.c_uint(0)
    try:
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, profile_id, None, ctypes.byref(count))
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) != E.FUNCTION_NOT_FOUND:
            raise
        return _placements_v1(nvml, handle, profile_id)
    if count.value == 0:
        return []
    capacity = count.value
    array = (nvml.c_nvmlGpuInstancePlacement_t * capacity)()
    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, profile_id, array, ctypes.byref(count))
    return [(int(array[i].start), int(array[i].size)) for i in range(min(count.value, capacity))]


def _placements_v1(nvml: Any, handle: Any, profile_id: int) -> list[tuple[int, int]]:
    """Before R470 there is no count query: the buffer must hold them all, and a placement starts on one of the
    GPU's 8 memory slices, so 8 entries always do."""
    array = (nvml.c_nvmlGpuInstancePlacement_t * MAX_MEMORY_SLICES)()
    count = ctypes.c_uint(0)
    c_call(nvml, "nvmlDeviceGetGpuInstancePossiblePlacements", handle, ctypes.c_uint(profile_id), array,
           ctypes.byref(count))
    return [(int(array[i].start), int(array[i].size)) for i in range(min(count.value, MAX_MEMORY_SLICES))]


def read_model(nvml: Any, handle: Any, gpu_name: str, total_mib: int) -> GpuModel:
    """Enumerate enums 0..COUNT-1, skipping NOT_SUPPORTED/INVALID_ARGUMENT, like go-nvlib and the DRA driver."""
    profiles: list[Profile] = []
    for enum in range(int(nvml.NVML_GPU_INSTANCE_PROFILE_COUNT)):
        try:
            info = gi_profile_info(nvml, handle, enum)
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) in (E.NOT_SUPPORTED, E.INVALID_ARGUMENT):
                continue
            raise
        max_count = int(info.instanceCount)
        if max_count <= 0:
            continue
        placements = possible_placements(nvml, handle, int(info.id))
        if not placements:
            continue
        profiles.append(
            Profile(
                name=profile_name(info, enum, total_mib),
                compute_slices=int(info.sliceCount),
                memory_slices=placements[0][1],
                memory_mib=int(info.memorySizeMB),
                max_count=max_count,
                starts=tuple(sorted(s for s, _ in placements)),
                nvml_profile_id=enum,
                smi_profile_id=int(info.id),
            )
        )
    profiles.sort(key=lambda p: (p.compute_slices, p.memory_slices, p.media_extension, p.nvml_profile_id))
    memory_slices = max((s + p.memory_slices for p in profiles for s in p.starts), default=0)
    compute_slices = max((p.compute_slices for p in profiles), default=0)
    return GpuModel(
        name=gpu_name,
        memory_slices=memory_slices,
        compute_slices=compute_slices,
        profiles=tuple(profiles),
        memory_mib=total_mib,
    )


def default_ci_profile(nvml: Any, gi: Any, gi_slices: int) -> Any:
    """The CI profile spanning the whole GI (the `*` row of `nvidia-smi mig -lcip`)."""
    for enum in range(int(nvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT)):
        try:
            info = ci_profile_info(nvml, gi, enum)
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) in (E.NOT_SUPPORTED, E.INVALID_ARGUMENT):
                continue
            raise
        if int(info.sliceCount) == gi_slices:
            return info
    raise E.HardwareError(f"no compute-instance profile spans a {gi_slices}-slice GPU instance", E.NOT_SUPPORTED)


def ci_profiles(nvml: Any, gi: Any) -> list[Any]:
    """Every CI profile the GI offers (to list its CIs, which are looked up per CI profile id)."""
    out: list[Any] = []
    for enum in range(int(nvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT)):
        try:
            out.append(ci_profile_info(nvml, gi, enum))
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) in (E.NOT_SUPPORTED, E.INVALID_ARGUMENT):
                continue
            raise
    return out
