"""The MIG instances on a GPU (hami-mig's, free, or foreign) and the processes holding the GPU."""

from __future__ import annotations

from hami_mig.doctor.gpus import NodeFacts, subject
from hami_mig.doctor.report import Check, ok, warn
from hami_mig.nvml import GpuDevice, HwInstance, NvmlBackend
from hami_mig.nvml.errors import HardwareError
from hami_mig.nvml.holders import WELL_KNOWN, GpuHolder, describe_holders, proc_holders

HOSTPID = "run the doctor as root on the host (or in the agent's pod, which has hostPID)"
# Well-known GPU clients that do not get in MIG's way (the persistence daemon keeps the driver loaded).
HARMLESS = frozenset({"nvidia-persistenced", "nvidia-smi"})


def _label(dev: GpuDevice, hw: HwInstance) -> str:
    return f"GPU {dev.index} {hw.profile}@{hw.start} (GI {hw.gi_id}, {hw.mig_uuid or 'no compute instance'})"


def _destroy(dev: GpuDevice, hw: HwInstance) -> str:
    return (f"once nothing uses it, `sudo nvidia-smi mig -i {dev.index} -gi {hw.gi_id} -dci` then "
            f"`sudo nvidia-smi mig -i {dev.index} -dgi -gi {hw.gi_id}`")


def instance_checks(dev: GpuDevice, facts: NodeFacts) -> list[Check]:
    """One line per instance, plus one saying how to tell hami-mig's own when the pod records were not read."""
    checks = [_instance(dev, hw, facts) for hw in dev.instances]
    if not dev.instances:
        checks.append(ok("gpu.instances", subject(dev), "no MIG instances", gpu=dev.index))
    elif facts.holdings is None:
        checks.append(warn("gpu.instances", subject(dev),
                           f"{len(dev.instances)} instance(s), but the pods' hami-mig.io/instances records were not "
                           "read, so hami-mig's own cannot be told from foreign ones", facts.records_hint,
                           gpu=dev.index))
    if facts.holdings is not None:
        present = {u for hw in dev.instances for u in hw.uuids()}
        for uuid, (holder, held) in sorted(facts.holdings.items()):
            if held.gpu_uuid == dev.uuid and uuid not in present:
                checks.append(warn("gpu.instances", subject(dev),
                                   f"pod {holder.label()} records {uuid} ({held.profile}@{held.start}), which NVML no "
                                   "longer has: it was destroyed outside hami-mig",
                                   f"restart pod {holder.namespace}/{holder.pod}", gpu=dev.index))
    return checks


def _instance(dev: GpuDevice, hw: HwInstance, facts: NodeFacts) -> Check:
    label = _label(dev, hw)
    held = None if facts.holdings is None else next(
        (facts.holdings[u][0] for u in hw.uuids() if u in facts.holdings), None)
    if held is not None:
        return ok("gpu.instance", label, f"hami-mig's: held by pod {held.label()}", gpu=dev.index)
    if not hw.standard:
        shape = f"{len(hw.compute)} compute instances" if hw.compute else "no compute instance"
        return warn("gpu.instance", label,
                    f"foreign: made outside hami-mig ({shape}); hami-mig never touches it and its slices stay "
                    "unavailable to pods", _destroy(dev, hw), gpu=dev.index)
    if hw.processes is None:
        return warn("gpu.instance", label, "its processes cannot be queried (NVML_ERROR_NO_PERMISSION), so hami-mig "
                                           "treats it as in use", HOSTPID, gpu=dev.index)
    if hw.processes:
        owner = "no pod records it" if facts.holdings is not None else "pod records not read"
        return warn("gpu.instance", label,
                    f"in use by pids {', '.join(map(str, hw.processes))} ({owner}): foreign while no pod holds it; "
                    "hami-mig never touches it", "stop those processes if they are not a Kubernetes workload, "
                                                 "or let them finish", gpu=dev.index)
    if facts.holdings is None:
        return ok("gpu.instance", label, "idle; hami-mig reuses or destroys an idle instance no pod holds",
                  gpu=dev.index)
    return ok("gpu.instance", label, "free (no pod holds it, no process): hami-mig reuses it, or destroys it when a "
                                     "plan needs the room", gpu=dev.index)


def holder_check(backend: NvmlBackend, dev: GpuDevice, proc_root: str) -> Check:
    """Processes on the GPU itself (outside MIG devices) or with its device file open: they block MIG changes."""
    who = subject(dev)
    try:
        found = [h for h in backend.holders(dev.index, proc_root) if not h.where.startswith("MIG-")]
        minor = backend.gpu_minor(dev.index)
    except HardwareError as exc:
        return warn("gpu.holders", who, f"processes cannot be listed: {exc}", HOSTPID, gpu=dev.index)
    node = f"/dev/nvidia{dev.index if minor is None else minor}"
    opened = [h for h in proc_holders(proc_root, [node], skip=[h.pid for h in found]) if h.where != "this node"]
    holders = [h for h in found + opened if h.name not in HARMLESS]
    if not holders:
        return ok("gpu.holders", who, f"no process holds the GPU outside its MIG devices ({node})", gpu=dev.index)
    return warn("gpu.holders", who, f"held by {describe_holders(holders)}",
                "stop them before hami-mig creates or destroys instances here, or those fail with "
                "NVML_ERROR_IN_USE (In use by another client)", gpu=dev.index)


def client_check(proc_root: str) -> Check:
    """Well-known GPU clients running anywhere on the node (DCGM, the GPU Operator's MIG manager)."""
    clients = [h for h in proc_holders(proc_root, []) if h.name not in HARMLESS]
    if not clients:
        names = ", ".join(n for n in WELL_KNOWN if n not in HARMLESS)
        return ok("node.gpu-clients", "node", f"none of the GPU clients that hold GPUs runs here ({names})")
    return warn("node.gpu-clients", "node", f"running: {_names(clients)}",
                "stop them on hami-mig nodes (DCGM: `sudo systemctl stop nvidia-dcgm`), or expect MIG mode changes "
                "and reshapes to fail with NVML_ERROR_IN_USE while they hold a GPU")


def _names(holders: list[GpuHolder]) -> str:
    return "; ".join(f"{h.name} (pid {h.pid}, {h.known_as})" for h in holders)
