"""Per GPU: what it is, whether MIG is on (or waits for a reset), its profile table, and its geometry entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hami_mig.agent.records import HeldInstance
from hami_mig.agent.snapshot import Holder
from hami_mig.doctor.report import Check, fail, ok, warn
from hami_mig.doctor.tables import compare, nearest_entry, nearest_model
from hami_mig.kube.annotations import MODE_MIG
from hami_mig.kube.nodeconfig import NodeConfig
from hami_mig.mig.catalogue import Catalogue
from hami_mig.mig.geometry import DeviceConfig, resolve_for_gpu
from hami_mig.nvml import GpuDevice, NvmlBackend
from hami_mig.nvml import errors as E

Holdings = Mapping[str, tuple[Holder, HeldInstance]]
REPORT_TABLE = "report `hami-mig devices --json` from this node so the catalogue can be corrected"


@dataclass(frozen=True)
class NodeFacts:
    """What the per-GPU checks need besides NVML: the ConfigMaps, the pod records, where /proc is."""

    catalogue: Catalogue
    device_config: DeviceConfig
    node_config: NodeConfig | None
    holdings: Holdings | None  # None: the pods' hami-mig.io/instances records could not be read
    records_hint: str  # how to read the records by hand when `holdings` is None
    proc_root: str = "/proc"


def subject(dev: GpuDevice) -> str:
    return f"GPU {dev.index}" + (f" ({dev.name})" if dev.name else "")


def identity(dev: GpuDevice) -> Check:
    if dev.mig_mode == "unknown":
        return fail("gpu.identity", f"GPU {dev.index}", dev.message or "cannot be queried",
                    f"check `nvidia-smi -q -i {dev.index}` and the kernel log (`sudo dmesg | grep -i xid`); a lost GPU "
                    "needs a reset or a reboot", gpu=dev.index)
    return ok("gpu.identity", subject(dev), f"{dev.uuid}, {dev.memory_mib} MiB", gpu=dev.index)


def mig_capable(nvml: Any, backend: NvmlBackend, index: int) -> bool:
    """nvmlDeviceGetMigMode answers NOT_SUPPORTED on a GPU without MIG (discovery reports that as disabled)."""
    handle, _uuid = backend.handle(index)
    try:
        nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) == E.NOT_SUPPORTED:
            return False
        raise
    return True


def mig_mode(dev: GpuDevice, capable: bool, facts: NodeFacts) -> Check:
    """MIG mode current and pending, read against what config.json asks of this GPU."""
    i, who = dev.index, subject(dev)
    node = facts.node_config
    if node is not None and node.filters(dev.uuid, i):
        return ok("gpu.mig-mode", who, f"listed in config.json filterdevices: hami-mig leaves it alone (MIG "
                                       f"{dev.mig_mode})", gpu=i)
    wanted = node.mode_of(dev.uuid, i)[0] if node is not None else MODE_MIG
    if wanted != MODE_MIG:
        return ok("gpu.mig-mode", who, f"config.json runs it in {wanted} mode: hami-mig leaves it alone (MIG "
                                       f"{dev.mig_mode})", gpu=i)
    if not capable:
        return warn("gpu.mig-mode", who, "not MIG-capable: hami-mig cannot manage it",
                    "nothing to do if that is intended; list it in config.json filterdevices to say so", gpu=i)
    reset = (f"stop every process on GPU {i}, then `sudo nvidia-smi -i {i} -r` (or reboot the node); hami-mig "
             "never resets a GPU")
    if dev.mig_mode == "enabled":
        return ok("gpu.mig-mode", who, "MIG mode enabled (current and pending)", gpu=i)
    if dev.mig_mode == "pending" and dev.model is not None:
        return warn("gpu.mig-mode", who, "MIG mode is enabled but a disable is pending: the next GPU reset turns "
                                         "MIG off", f"run `sudo nvidia-smi -i {i} -mig 1` to cancel the pending "
                                                    "change", gpu=i)
    if dev.mig_mode == "pending":
        return fail("gpu.mig-mode", who, "MIG mode enable is pending (current disabled, pending enabled): the GPU "
                                         "needs a reset", reset, gpu=i)
    return fail("gpu.mig-mode", who, "MIG mode is disabled",
                f"run `sudo nvidia-smi -i {i} -mig 1` on the idle GPU (Ampere then needs `sudo nvidia-smi -i {i} -r` "
                "or a reboot), or start the agent with --manage-mig-mode", gpu=i)


def profile_table(dev: GpuDevice, facts: NodeFacts) -> Check:
    """NVML's table against the packaged catalogue: equal, drifted (and by how much), or an unknown model."""
    assert dev.model is not None
    who = subject(dev)
    known = facts.catalogue.find(dev.name)
    if known is None:
        near = nearest_model(dev.model, facts.catalogue)
        drift = f" (its table differs by: {compare(dev.model, near).describe() or 'nothing'})" if near else ""
        return warn("gpu.profiles", who,
                    f"not in hami-mig's catalogue; NVML offers {len(dev.model.profiles)} profiles; nearest known "
                    f"model by profile table: {near.name if near else 'none'}{drift}",
                    f"nothing breaks (hami-mig plans from NVML's own table); {REPORT_TABLE}", gpu=dev.index)
    diff = compare(dev.model, known)
    if diff.identical:
        return ok("gpu.profiles", who, f"NVML's profile table equals the catalogue's {known.name} "
                                       f"({len(known.profiles)} profiles, memory drift 0.0%)", gpu=dev.index)
    return warn("gpu.profiles", who,
                f"NVML's profile table differs from the catalogue's {known.name} (largest memory drift "
                f"{diff.max_drift_pct:.1f}%): {diff.describe()}",
                f"nothing breaks (hami-mig plans from NVML's own table); check the memory values in "
                f"device-config.yaml against `hami-mig devices` and {REPORT_TABLE}", gpu=dev.index)


def geometry_entry(dev: GpuDevice, facts: NodeFacts) -> Check:
    """Which knownMigGeometries entry the GPU's name matches, and how many of its geometries fit."""
    assert dev.model is not None
    who = subject(dev)
    found = resolve_for_gpu(facts.device_config, dev.model, facts.catalogue)
    if found.rule is None:
        like = facts.catalogue.find(dev.name) or nearest_model(dev.model, facts.catalogue)
        near = nearest_entry(facts.device_config, dev.name, facts.catalogue, like)
        hint = f"; nearest: {near.model!r} (knownMigGeometries[{near.rule}])" if near else ""
        where = f"knownMigGeometries[{near.rule}].models" if near else "a knownMigGeometries entry's models"
        return fail("gpu.geometry", who, f"no knownMigGeometries entry matches {dev.name!r}{hint}",
                    f"add {dev.name!r} to {where} in device-config.yaml if that entry's geometries fit this GPU, "
                    "or run the agent with --geometries any", gpu=dev.index)
    entry = f"knownMigGeometries[{found.rule}] (models entry {found.matched_model!r})"
    usable = f"{len(found.geometries)} of {len(found.geometries) + len(found.skipped)} geometries fit"
    if not found.geometries:
        return fail("gpu.geometry", who, f"matches {entry} but none of its geometries fits: {found.skipped[0]}",
                    "correct that entry in device-config.yaml (`hami-mig plan --device-config FILE` checks it)",
                    gpu=dev.index)
    if found.skipped:
        return warn("gpu.geometry", who, f"matches {entry}; {usable}; skipped: {found.skipped[0]}",
                    "correct the skipped geometries in device-config.yaml (`hami-mig plan --device-config FILE` "
                    "checks them); the others keep working", gpu=dev.index)
    return ok("gpu.geometry", who, f"matches {entry}; {usable}", gpu=dev.index)
