"""Who holds a GPU when the driver answers IN_USE: its processes per NVML, and well-known GPU clients.

NVML names the compute processes on a GPU and on each of its MIG devices; their names come from
`/proc/<pid>/comm` when the agent can read it (hostPID). Monitoring daemons such as DCGM's
nv-hostengine hold a GPU without being compute processes: they are found by name in /proc and,
where the agent may read `/proc/<pid>/fd`, by the GPU device files they keep open.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import graphics_processes, running_processes
from hami_mig.nvml.discovery import mig_devices

# comm names (the kernel keeps 15 characters) of GPU clients known to hold GPUs or MIG devices open.
WELL_KNOWN: dict[str, str] = {
    "nv-hostengine": "DCGM host engine",
    "dcgm-exporter": "DCGM exporter",
    "dcgmi": "DCGM CLI",
    "nvidia-persistenced": "NVIDIA persistence daemon",
    "nvidia-smi": "nvidia-smi",
    "nvidia-mig-parted": "GPU Operator mig-parted",
    "nvidia-mig-manager": "GPU Operator MIG manager",
}
COMM_LEN = 15
SCAN_BUDGET_S = 0.25  # the /proc scan runs inside a failing Allocate: bounded


@dataclass(frozen=True)
class GpuHolder:
    """One process that holds (or may hold) the GPU, and where it was seen."""

    pid: int
    name: str  # comm, or "?" when /proc/<pid>/comm is not readable
    where: str  # "MIG-…", "GPU 0", or the device file it keeps open
    known_as: str = ""  # "DCGM host engine" for a well-known client

    def label(self) -> str:
        what = f"{self.name} (pid {self.pid}{', ' + self.known_as if self.known_as else ''})"
        return f"{what} on {self.where}"


def comm(proc_root: str | os.PathLike[str], pid: int) -> str | None:
    try:
        return (Path(proc_root) / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def known_as(name: str | None) -> str:
    if not name:
        return ""
    return next((what for full, what in WELL_KNOWN.items() if full[:COMM_LEN] == name[:COMM_LEN]), "")


def gpu_processes(nvml: Any, handle: Any) -> tuple[int, ...] | None:
    """Pids on a physical GPU (compute, plus graphics where the binding has it); None when NVML will not say."""
    try:
        pids = {int(p.pid) for p in running_processes(nvml, handle)}
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) in (E.NO_PERMISSION, E.NOT_SUPPORTED):
            return None
        raise
    pids.update(int(p.pid) for p in graphics_processes(nvml, handle))  # compute ones block MIG; graphics a bonus
    return tuple(sorted(pids))


def nvml_holders(nvml: Any, handle: Any, proc_root: str, *, gpu_label: str) -> list[GpuHolder]:
    """Processes NVML reports on the GPU and on each of its MIG devices, named from /proc."""
    seen: dict[int, GpuHolder] = {}
    try:
        migs = mig_devices(nvml, handle)
    except nvml.NVMLError:
        migs = {}
    for dev in migs.values():
        for pid in dev.processes or ():
            name = comm(proc_root, pid)
            seen.setdefault(pid, GpuHolder(pid, name or "?", dev.uuid, known_as(name)))
    for pid in gpu_processes(nvml, handle) or ():
        name = comm(proc_root, pid)
        seen.setdefault(pid, GpuHolder(pid, name or "?", gpu_label, known_as(name)))
    return sorted(seen.values(), key=lambda h: h.pid)


def proc_holders(proc_root: str, device_files: Sequence[str], *, budget_s: float = SCAN_BUDGET_S,
                 skip: Iterable[int] = ()) -> list[GpuHolder]:
    """Well-known GPU clients running on the node, and any process with one of `device_files` open.

    Reading another process's fds needs ptrace rights: where that is refused only names are matched.
    """
    root = Path(proc_root)
    wanted = set(device_files)
    skipped = {os.getpid(), *skip}
    deadline = time.monotonic() + budget_s
    out: list[GpuHolder] = []
    try:
        entries = [e for e in os.scandir(root) if e.name.isdigit()]
    except OSError:
        return []
    for entry in entries:
        if time.monotonic() > deadline:
            break
        pid = int(entry.name)
        if pid in skipped:
            continue
        name = comm(root, pid)
        what = known_as(name)
        opened = _open_device(root / entry.name / "fd", wanted) if wanted else None
        if opened:
            out.append(GpuHolder(pid, name or "?", f"{opened} (open)", what))
        elif what:
            out.append(GpuHolder(pid, name or "?", "this node", what))
    return out


def _open_device(fd_dir: Path, wanted: set[str]) -> str | None:
    try:
        fds = os.scandir(fd_dir)
    except OSError:
        return None
    with fds:
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target in wanted:
                return target
    return None


def describe_holders(holders: Sequence[GpuHolder], limit: int = 6) -> str:
    """`python3 (pid 4242) on MIG-…; nv-hostengine (pid 77, DCGM host engine) on /dev/nvidia0 (open)`."""
    if not holders:
        return ""
    shown = "; ".join(h.label() for h in holders[:limit])
    more = f" and {len(holders) - limit} more" if len(holders) > limit else ""
    return shown + more


def gpu_minor(nvml: Any, handle: Any) -> int | None:
    """The GPU's /dev/nvidia<N> minor number; None when the driver does not say."""
    fn = getattr(nvml, "nvmlDeviceGetMinorNumber", None)
    if fn is None:
        return None
    try:
        return int(fn(handle))
    except nvml.NVMLError:
        return None
