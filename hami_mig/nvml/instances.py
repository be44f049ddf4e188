"""Create or destroy one MIG instance (GI + its full-size CI) safely, reading back what the driver chose."""

from __future__ import annotations

import ctypes
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from hami_mig.mig.catalogue import Profile
from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import compute_instance_info
from hami_mig.nvml.discovery import compute_instances, find_gpu_instance, mig_devices
from hami_mig.nvml.profiles import default_ci_profile


@dataclass(frozen=True)
class InstanceRecord:
    """A created, found or destroyed instance: where it is and what the driver called it."""

    profile: str
    start: int
    size: int
    gi_id: int
    ci_id: int | None
    mig_uuid: str | None
    memory_mib: int
    ci_profile_id: int | None = None  # NVML's id of the CI's profile, when this call knows it (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "start": self.start, "size": self.size, "gi_id": self.gi_id,
                "ci_id": self.ci_id, "mig_uuid": self.mig_uuid, "memory_mib": self.memory_mib}


@dataclass(frozen=True)
class Created:
    """Result of a create: the instance, and which parts this call made (what a rollback must undo)."""

    record: InstanceRecord
    gi_created: bool
    ci_created: bool

    @property
    def existed(self) -> bool:
        return not self.gi_created and not self.ci_created


def _readback(nvml: Any, handle: Any, profile: Profile, gi: Any, ci: Any) -> InstanceRecord:
    gi_info = nvml.nvmlGpuInstanceGetInfo(gi)
    ci_info = compute_instance_info(nvml, ci)
    gi_id, ci_id = int(gi_info.id), int(ci_info.id)
    dev = mig_devices(nvml, handle, with_processes=False).get((gi_id, ci_id))
    if dev is None:
        raise E.HardwareError(f"GPU instance {gi_id} / compute instance {ci_id} has no MIG device", E.NOT_FOUND)
    return InstanceRecord(profile.name, int(gi_info.placement.start), int(gi_info.placement.size), gi_id, ci_id,
                          dev.uuid, dev.memory_mib if dev.memory_mib is not None else profile.memory_mib,
                          int(ci_info.profileId))


def _create_default_ci(nvml: Any, gi: Any, profile: Profile) -> Any:
    info = default_ci_profile(nvml, gi, profile.compute_slices)
    return nvml.nvmlGpuInstanceCreateComputeInstance(gi, int(info.id))


def undo_create(nvml: Any, gi: Any, ci: Any | None, destroy_gi: bool) -> str | None:
    """Best-effort cleanup of a half-made instance; returns what could not be undone."""
    try:
        if ci is not None:
            nvml.nvmlComputeInstanceDestroy(ci)
        if destroy_gi:
            nvml.nvmlGpuInstanceDestroy(gi)
    except nvml.NVMLError as exc:
        return E.describe_nvml(exc)
    return None


def create_instance(nvml: Any, handle: Any, profile: Profile, start: int) -> Created:
    """Create profile@start with its default CI; an existing one is returned as is (idempotent)."""
    found = find_gpu_instance(nvml, handle, profile, start)
    if found is not None:
        gi = found[0]
        cis = compute_instances(nvml, gi)
        if cis:
            return Created(_readback(nvml, handle, profile, gi, cis[0][0]), False, False)
        gi_created = False  # a GI left without CI (interrupted create): complete it
    else:
        placement = nvml.c_nvmlGpuInstancePlacement_t()
        placement.start = start
        placement.size = profile.memory_slices
        gi = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(handle, profile.smi_profile_id, ctypes.byref(placement))
        gi_created = True
    ci = None
    try:
        ci = _create_default_ci(nvml, gi, profile)
        return Created(_readback(nvml, handle, profile, gi, ci), gi_created, True)
    except Exception as exc:
        leftover = undo_create(nvml, gi, ci, gi_created)
        if leftover is not None:
            exc.add_note(f"cleanup of the half-made {profile.name}@{start} failed: {leftover}")
        raise


@dataclass(frozen=True)
class Destroyed:
    """A destroyed instance and its (now gone) MIG UUIDs."""

    record: InstanceRecord
    mig_uuids: tuple[str, ...]


def remove_gi(nvml: Any, gi: Any, profile: Profile, *, restore: bool) -> None:
    """Destroy a GI whose CIs are gone; `restore`: on failure put its whole-GI CI back, so the GI is not left
    unusable (the error says so)."""
    try:
        nvml.nvmlGpuInstanceDestroy(gi)
    except nvml.NVMLError as exc:
        if restore:
            try:
                _create_default_ci(nvml, gi, profile)
                exc.add_note("its compute instance was re-created, so it stays usable under a new MIG UUID")
            except nvml.NVMLError as again:
                exc.add_note(f"restoring its compute instance failed too: {E.describe_nvml(again)}")
        raise


def destroy_instance(nvml: Any, handle: Any, profile: Profile, start: int,
                     protected: Collection[str] = (), expect_gi_id: int | None = None) -> Destroyed | None:
    """Destroy profile@start (CIs, then the GI) unless busy; None when no such instance exists.

    Busy = a pod holds one of its MIG devices, a process runs on one, or processes cannot be queried.
    The check is made here, at execution time, not trusted from the plan.
    """
    found = find_gpu_instance(nvml, handle, profile, start)
    if found is None:
        return None
    gi, info = found
    gi_id = int(info.id)
    if expect_gi_id is not None and gi_id != expect_gi_id:
        raise E.InstanceBusyError(
            f"{profile.name}@{start} is now GPU instance {gi_id}, not {expect_gi_id} that this plan created")
    cis = compute_instances(nvml, gi)
    devices = mig_devices(nvml, handle)
    uuids: list[str] = []
    for _ci, cinfo, _p in cis:
        dev = devices.get((gi_id, int(cinfo.id)))
        label = f"{profile.name}@{start} ({dev.uuid if dev else f'GI {gi_id} CI {int(cinfo.id)}'})"
        if dev is None or dev.processes is None:
            raise E.InstanceBusyError(f"{label}: its processes cannot be queried, so it is treated as in use",
                                      E.NO_PERMISSION)
        if dev.uuid in protected:
            raise E.InstanceBusyError(f"{label} is held by a pod")
        if dev.processes:
            raise E.InstanceBusyError(f"{label} has running processes (pids {', '.join(map(str, dev.processes))})",
                                      E.IN_USE)
        uuids.append(dev.uuid)
    for ci, _cinfo, _p in cis:
        nvml.nvmlComputeInstanceDestroy(ci)
    remove_gi(nvml, gi, profile, restore=len(cis) == 1 and int(cis[0][2].sliceCount) == profile.compute_slices)
    ci_id = int(cis[0][1].id) if cis else None
    record = InstanceRecord(profile.name, start, int(info.placement.size), gi_id, ci_id,
                            uuids[0] if uuids else None, profile.memory_mib)
    return Destroyed(record, tuple(uuids))
