"""Read what is on the GPUs now: identity, MIG mode, GIs, CIs, MIG device UUIDs and their processes."""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass
from typing import Any

from hami_mig.mig.catalogue import Profile
from hami_mig.nvml import compat
from hami_mig.nvml import errors as E
from hami_mig.nvml.device import GpuDevice, MigMode
from hami_mig.nvml.profiles import ci_profiles, decode

MIB = 1 << 20
MIG_ENABLE = 1


@dataclass(frozen=True)
class MigDevice:
    """One MIG device handle's identity, found by walking `…GetMigDeviceHandleByIndex`."""

    gi_id: int
    ci_id: int
    uuid: str
    memory_mib: int | None
    processes: tuple[int, ...] | None


def mig_mode(nvml: Any, handle: Any) -> tuple[MigMode, bool]:
    """("enabled"|"disabled"|"pending", whether MIG is active now); a change waits for a reset on Ampere."""
    try:
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) == E.NOT_SUPPORTED:
            return "disabled", False
        raise
    active = int(current) == MIG_ENABLE
    if int(current) != int(pending):
        return "pending", active
    return ("enabled" if active else "disabled"), active


def numa_node(nvml: Any, handle: Any) -> int | None:
    """NUMA node when the binding and driver have it; None otherwise (older pynvml, no NUMA)."""
    fn = getattr(nvml, "nvmlDeviceGetNumaNodeId", None)
    if fn is None:
        return None
    try:
        node = int(fn(handle))
    except nvml.NVMLError:
        return None
    return node if node >= 0 else None


def running_processes(nvml: Any, handle: Any) -> list[Any] | None:
    """NVML's compute processes on a GPU or MIG device; None when the driver will not say (NO_PERMISSION)."""
    try:
        return compat.running_processes(nvml, handle)  # v3, v2 or v1, as the driver has them
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) in (E.NO_PERMISSION, E.NOT_SUPPORTED):
            return None
        raise


def processes(nvml: Any, mig_handle: Any) -> tuple[int, ...] | None:
    """Pids on a MIG device; None when the driver will not say (NO_PERMISSION): callers treat it as busy."""
    procs = running_processes(nvml, mig_handle)
    return None if procs is None else tuple(sorted({int(p.pid) for p in procs}))


def mig_devices(nvml: Any, handle: Any, *, with_processes: bool = True) -> dict[tuple[int, int], MigDevice]:
    """Walk MIG device indexes 0..max-1, skipping NOT_FOUND holes (go-nvlib), keyed by (GI id, CI id)."""
    found: dict[tuple[int, int], MigDevice] = {}
    for i in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) == E.NOT_FOUND:
                continue
            raise
        gi_id = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
        ci_id = int(nvml.nvmlDeviceGetComputeInstanceId(mig))
        try:
            memory: int | None = int(nvml.nvmlDeviceGetMemoryInfo(mig).total) // MIB
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) not in (E.NO_PERMISSION, E.NOT_SUPPORTED):
                raise
            memory = None
        procs = processes(nvml, mig) if with_processes else ()
        found[(gi_id, ci_id)] = MigDevice(gi_id, ci_id, decode(nvml.nvmlDeviceGetUUID(mig)), memory, procs)
    return found


def gpu_instances(nvml: Any, handle: Any, profile: Profile) -> list[tuple[Any, Any]]:
    """(GI handle, GI info) for every GI of one profile; the array must hold instanceCount entries."""
    size = max(1, profile.max_count)
    array = (nvml.c_nvmlGpuInstance_t * size)()
    count = ctypes.c_uint(size)
    nvml.nvmlDeviceGetGpuInstances(handle, profile.smi_profile_id, array, ctypes.byref(count))
    return [(array[i], nvml.nvmlGpuInstanceGetInfo(array[i])) for i in range(min(count.value, size))]


def find_gpu_instance(nvml: Any, handle: Any, profile: Profile, start: int) -> tuple[Any, Any] | None:
    return next((gi for gi in gpu_instances(nvml, handle, profile) if int(gi[1].placement.start) == start), None)


def compute_instances(nvml: Any, gi: Any) -> list[tuple[Any, Any, Any]]:
    """(CI handle, CI info, CI profile info) for every CI in a GI, listed per CI profile id."""
    out: list[tuple[Any, Any, Any]] = []
    for pinfo in ci_profiles(nvml, gi):
        size = max(1, int(pinfo.instanceCount))
        array = (nvml.c_nvmlComputeInstance_t * size)()
        count = ctypes.c_uint(size)
        nvml.nvmlGpuInstanceGetComputeInstances(gi, int(pinfo.id), array, ctypes.byref(count))
        for i in range(min(count.value, size)):
            out.append((array[i], compat.compute_instance_info(nvml, array[i]), pinfo))
    return sorted(out, key=lambda c: int(c[1].id))


def total_memory_mib(nvml: Any, handle: Any) -> int:
    try:
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // MIB
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) != E.NO_PERMISSION:
            raise
        return 0


def unreadable_gpu(nvml: Any, index: int, exc: BaseException) -> GpuDevice:
    """A GPU that cannot be queried (lost, no permission) is still listed, with the NVML error as its message."""
    uuid = ""
    with contextlib.suppress(nvml.NVMLError):
        uuid = decode(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))
    return GpuDevice(index, uuid, "", 0, "unknown", None,
                     message=f"GPU {index} cannot be queried: {E.describe_nvml(exc)}")
