"""Create or destroy an instance the caller already knows about (the agent's inventory), in a handful of calls.

Every safety check of instances.py is made here too, at execution time: the GI at the known id must
still be that profile at that placement, its MIG device must still be the known UUID, and a held,
busy or unqueryable instance is refused. Where what is known no longer matches the GPU, the caller
falls back to the full lookup of instances.py (`STALE`); a create where the inventory saw nothing
simply fails if someone else took the place meanwhile (the driver refuses it).
"""

from __future__ import annotations

import ctypes
from collections.abc import Collection
from typing import Any, Final

from hami_mig.mig.catalogue import Profile
from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import compute_instance_info
from hami_mig.nvml.device import HwInstance
from hami_mig.nvml.discovery import processes
from hami_mig.nvml.facts import FactsCache, GpuFacts
from hami_mig.nvml.instances import Created, Destroyed, InstanceRecord, remove_gi, undo_create
from hami_mig.nvml.profiles import decode
from hami_mig.nvml.reader import walk_mig_devices

STALE: Final = "stale"
_GONE = (E.NOT_FOUND, E.INVALID_ARGUMENT)


def _gone(nvml: Any, exc: BaseException) -> bool:
    return isinstance(exc, nvml.NVMLError) and E.nvml_code(exc) in _GONE


def find_mig(cache: FactsCache, facts: GpuFacts, key: tuple[int, int], live: Collection[tuple[int, int]]) -> Any:
    """(handle, UUID) of the MIG device of (GI id, CI id). Drivers number MIG devices by (GI id, CI id), so
    the index `key` takes among the live ones is tried first (and checked); otherwise every index is walked."""
    nvml = cache.nvml
    guess = sorted({*live, key}).index(key)
    try:
        mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(facts.handle, guess)
        if (int(nvml.nvmlDeviceGetGpuInstanceId(mig)), int(nvml.nvmlDeviceGetComputeInstanceId(mig))) == key:
            return mig, decode(nvml.nvmlDeviceGetUUID(mig))
    except nvml.NVMLError as exc:
        if not _gone(nvml, exc):
            raise
    found = walk_mig_devices(cache, facts).get(key)
    if found is None:
        raise E.HardwareError(f"GPU instance {key[0]} / compute instance {key[1]} has no MIG device", E.NOT_FOUND)
    return found.handle, found.uuid


def create_known_free(cache: FactsCache, facts: GpuFacts, profile: Profile, start: int,
                      live: set[tuple[int, int]]) -> Created:
    """Create profile@start with its whole-GI CI where the inventory saw nothing; `live` (the GPU's (GI id,
    CI id) pairs) gains the new one."""
    nvml = cache.nvml
    placement = nvml.c_nvmlGpuInstancePlacement_t()
    placement.start = start
    placement.size = profile.memory_slices
    gi = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(facts.handle, profile.smi_profile_id, ctypes.byref(placement))
    ci = None
    try:
        ci_profile = cache.default_ci(facts, gi, profile.smi_profile_id, profile.compute_slices)
        ci = nvml.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile.id)
        gi_info = nvml.nvmlGpuInstanceGetInfo(gi)
        key = int(gi_info.id), int(compute_instance_info(nvml, ci).id)
        mig, uuid = find_mig(cache, facts, key, live)
        memory = cache.mig_memory(facts, mig, profile.smi_profile_id)
    except Exception as exc:
        leftover = undo_create(nvml, gi, ci, True)
        if leftover is not None:
            exc.add_note(f"cleanup of the half-made {profile.name}@{start} failed: {leftover}")
        raise
    facts.mig_ids[uuid] = key
    live.add(key)
    record = InstanceRecord(profile.name, int(gi_info.placement.start), int(gi_info.placement.size), key[0], key[1],
                            uuid, memory if memory is not None else profile.memory_mib, ci_profile.id)
    return Created(record, True, True)


def destroy_known(cache: FactsCache, facts: GpuFacts, profile: Profile, hw: HwInstance, protected: Collection[str],
                  live: set[tuple[int, int]]) -> Destroyed | str:
    """Destroy a known whole-GI instance unless held or busy; STALE when the GPU no longer matches `hw`."""
    nvml = cache.nvml
    ci_known = hw.compute[0]
    try:
        gi = nvml.nvmlDeviceGetGpuInstanceById(facts.handle, hw.gi_id)
        info = nvml.nvmlGpuInstanceGetInfo(gi)
        if int(info.profileId) != profile.smi_profile_id or int(info.placement.start) != hw.start:
            return STALE
        ci = nvml.nvmlGpuInstanceGetComputeInstanceById(gi, ci_known.ci_id)
        mig = nvml.nvmlDeviceGetHandleByUUID(ci_known.mig_uuid)
    except nvml.NVMLError as exc:
        if _gone(nvml, exc):
            return STALE
        raise
    uuid = ci_known.mig_uuid or ""
    label = f"{profile.name}@{hw.start} ({uuid})"
    pids = processes(nvml, mig)  # the same checks, in the same order, as instances.destroy_instance
    if pids is None:
        raise E.InstanceBusyError(f"{label}: its processes cannot be queried, so it is treated as in use",
                                  E.NO_PERMISSION)
    if uuid in protected:
        raise E.InstanceBusyError(f"{label} is held by a pod")
    if pids:
        raise E.InstanceBusyError(f"{label} has running processes (pids {', '.join(map(str, pids))})", E.IN_USE)
    nvml.nvmlComputeInstanceDestroy(ci)
    remove_gi(nvml, gi, profile, restore=True)
    live.discard((hw.gi_id, ci_known.ci_id))
    facts.mig_ids.pop(uuid, None)
    record = InstanceRecord(profile.name, hw.start, hw.size, hw.gi_id, ci_known.ci_id, uuid, profile.memory_mib)
    return Destroyed(record, (uuid,))
