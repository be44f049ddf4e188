"""Read a GPU's MIG instances with as few NVML calls as the driver allows, using the facts read once.

A full read asks NVML only what can change: the MIG mode, the GPU instances of each profile, the
compute instances of each (one call for the usual whole-GI CI), the MIG device handles with their
UUIDs, and every process in one query on the GPU (per MIG device where that is not allowed).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import compute_instance_info
from hami_mig.nvml.device import GpuDevice, HwComputeInstance, HwInstance, enable_hint
from hami_mig.nvml.discovery import gpu_instances, mig_mode, processes, running_processes
from hami_mig.nvml.facts import CiProfile, FactsCache, GpuFacts
from hami_mig.nvml.profiles import decode

NO_ID = 0xFFFFFFFF  # a process outside any GPU / compute instance
MAX_CIS = 8  # room for every CI a GI can hold (at most 7 slices)
ProcessMap = dict[tuple[int, int], tuple[int, ...]]


@dataclass(frozen=True)
class MigHandle:
    """A MIG device found by walking the GPU's MIG device indexes."""

    index: int
    handle: Any
    uuid: str
    gi_id: int
    ci_id: int


def process_map(nvml: Any, handle: Any) -> ProcessMap | None:
    """Pids per (GI id, CI id) from one query on the physical GPU; None where NVML will not answer it
    (no permission, or a binding whose process struct has no instance ids): ask each MIG device then."""
    procs = running_processes(nvml, handle)
    if procs is None:
        return None
    found: dict[tuple[int, int], set[int]] = {}
    for p in procs:
        gi, ci = getattr(p, "gpuInstanceId", None), getattr(p, "computeInstanceId", None)
        if gi is None or ci is None:
            return None
        if int(gi) != NO_ID and int(ci) != NO_ID:
            found.setdefault((int(gi), int(ci)), set()).add(int(p.pid))
    return {key: tuple(sorted(pids)) for key, pids in found.items()}


def walk_mig_devices(cache: FactsCache, facts: GpuFacts) -> dict[tuple[int, int], MigHandle]:
    """Every MIG device by (GI id, CI id): indexes 0..max-1 skipping NOT_FOUND holes (go-nvlib); the ids of
    a UUID seen before are not asked again (a MIG UUID names one compute instance for its whole life)."""
    nvml = cache.nvml
    found: dict[tuple[int, int], MigHandle] = {}
    for i in range(cache.max_mig_devices(facts)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(facts.handle, i)
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) == E.NOT_FOUND:
                continue
            raise
        uuid = decode(nvml.nvmlDeviceGetUUID(mig))
        ids = facts.mig_ids.get(uuid)
        if ids is None:
            ids = int(nvml.nvmlDeviceGetGpuInstanceId(mig)), int(nvml.nvmlDeviceGetComputeInstanceId(mig))
            facts.mig_ids[uuid] = ids
        found[ids] = MigHandle(i, mig, uuid, *ids)
    for stale in set(facts.mig_ids) - {m.uuid for m in found.values()}:
        facts.mig_ids.pop(stale, None)
    return found


def list_cis(cache: FactsCache, facts: GpuFacts, gi: Any, profile: Profile,
             migs: dict[tuple[int, int], MigHandle], gi_id: int) -> list[tuple[int, CiProfile]]:
    """(CI id, CI profile) of every CI in a GI, by CI id. The whole-GI CI profile is asked first: when it
    holds a CI nothing else fits beside it, and that CI's id is its MIG device's (one call in all)."""
    nvml = cache.nvml
    offered = cache.ci_profiles(facts, gi, profile.smi_profile_id)
    whole = next((p for p in offered if p.slices == profile.compute_slices), None)
    order = ([whole] if whole else []) + [p for p in offered if p is not whole]
    out: list[tuple[int, CiProfile]] = []
    for n, ci_profile in enumerate(order):
        array = (nvml.c_nvmlComputeInstance_t * MAX_CIS)()
        count = ctypes.c_uint(MAX_CIS)
        nvml.nvmlGpuInstanceGetComputeInstances(gi, ci_profile.id, array, ctypes.byref(count))
        handles = [array[i] for i in range(min(count.value, MAX_CIS))]
        mine = [key for key in migs if key[0] == gi_id]
        if n == 0 and whole is not None and len(handles) == 1 and len(mine) == 1:
            return [(mine[0][1], ci_profile)]
        out.extend((int(compute_instance_info(nvml, h).id), ci_profile) for h in handles)
        if n == 0 and whole is not None and handles:
            break  # a whole-GI CI leaves no room for another
    return sorted(out, key=lambda c: c[0])


def read_instances(cache: FactsCache, facts: GpuFacts, model: GpuModel) -> tuple[HwInstance, ...]:
    """Every GI with its CIs, each CI with its MIG device's UUID, memory and processes."""
    nvml = cache.nvml
    migs = walk_mig_devices(cache, facts)
    procs = process_map(nvml, facts.handle)
    out: list[HwInstance] = []
    for profile in model.profiles:
        for gi, info in gpu_instances(nvml, facts.handle, profile):
            gi_id = int(info.id)
            cis = []
            for ci_id, ci_profile in list_cis(cache, facts, gi, profile, migs, gi_id):
                mig = migs.get((gi_id, ci_id))
                memory = cache.mig_memory(facts, mig.handle, profile.smi_profile_id) if mig else None
                if mig is None:
                    pids: tuple[int, ...] | None = None
                elif procs is not None:
                    pids = procs.get((gi_id, ci_id), ())
                else:
                    pids = processes(nvml, mig.handle)
                cis.append(HwComputeInstance(ci_id, ci_profile.id, ci_profile.slices, mig.uuid if mig else None,
                                             memory if memory is not None else profile.memory_mib, pids))
            out.append(HwInstance(profile.name, int(info.placement.start), int(info.placement.size), gi_id,
                                  int(info.profileId), profile.compute_slices, profile.memory_mib, tuple(cis)))
    return tuple(sorted(out, key=lambda i: (i.start, i.profile)))


def read_device(cache: FactsCache, index: int) -> GpuDevice:
    """One GPU, fully read (NVMLError when it cannot be queried)."""
    facts = cache.get(index)
    mode, active = mig_mode(cache.nvml, facts.handle)
    base = (index, facts.uuid, facts.name, facts.memory_mib, mode, facts.numa_node)
    if not active:
        facts.forget_mig()
        message = enable_hint(index)
        if mode == "pending":
            message = (f"MIG mode change is pending on GPU {index}: reset the GPU (`nvidia-smi -i {index} -r`) "
                       "or reboot the node; hami-mig never resets a GPU")
        return GpuDevice(*base, message=message)
    model = cache.model(facts)
    message = ""
    if mode == "pending":
        message = f"MIG mode will be disabled on GPU {index} at the next reset; hami-mig keeps using it until then"
    return GpuDevice(*base, model, read_instances(cache, facts, model), message)
