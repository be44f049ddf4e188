"""MIG mode per GPU: with the opt-in `--manage-mig-mode`, enable or disable MIG on IDLE GPUs to match the node config.

A GPU whose operating mode is `mig` (the node's `operatingmode`, or its entry in config.json's `gpus`)
gets MIG enabled once it runs no process; a GPU that the `gpus` list explicitly sets to another mode
gets MIG disabled once no pod holds and no process uses any of its instances (its free instances are
destroyed first). On Ampere the driver cannot switch a GPU that was in use since boot without a reset:
the change is then *pending* and reported (log, node annotation, snapshot, Event); hami-mig never
resets a GPU. Without the flag nothing changes and the GPU's reason says what an administrator must do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import HeldInstance
from hami_mig.agent.snapshot import Holder
from hami_mig.kube.annotations import MODE_MIG
from hami_mig.mig.plan import Operation
from hami_mig.nvml import ApplyError, GpuDevice, HardwareError, NvmlBackend
from hami_mig.nvml.holders import comm
from hami_mig.nvml.migmode import MigModeChange

log = logging.getLogger(__name__)

State = Literal["waiting", "pending", "failed", "enabled", "disabled", "hint"]
Notify = Callable[[str, str, str], None]  # (reason, message, Normal|Warning) -> an Event on the Node

_EVENT: dict[State, tuple[str, str]] = {
    "waiting": ("MIGModeWaiting", "Normal"),
    "pending": ("MIGModePending", "Warning"),
    "failed": ("MIGModeChangeFailed", "Warning"),
    "enabled": ("MIGModeEnabled", "Normal"),
    "disabled": ("MIGModeDisabled", "Normal"),
}


@dataclass(frozen=True)
class ModeStatus:
    """What mode management last did or waits for on one GPU."""

    state: State
    message: str


def _direction(dev: GpuDevice) -> bool:
    """For a pending GPU: True when MIG is being enabled (it is not active yet, so no profile table)."""
    return dev.model is None


class MigModeManager:
    """Decides and applies MIG mode changes; remembers each GPU's status so Events fire once per change."""

    def __init__(self, config: AgentConfig, backend: NvmlBackend, notify: Notify | None = None) -> None:
        self.config = config
        self.backend = backend
        self._notify = notify or (lambda _r, _m, _t: None)
        self.status: dict[str, ModeStatus] = {}

    def notes(self) -> dict[str, str]:
        """GPU UUID -> what mode management says about it (shown as part of the GPU's unmanaged reason)."""
        return {uuid: s.message for uuid, s in self.status.items() if s.state not in ("enabled", "disabled")}

    def reconcile(self, devices: Sequence[GpuDevice], held: Mapping[str, tuple[Holder, HeldInstance]],
                  step_back: str | None = None) -> bool:
        """One pass over the GPUs; True when a GPU's mode (or its instances) changed and must be re-read."""
        changed = False
        for dev in devices:
            if step_back or self.config.filtered(dev.uuid, dev.index) or dev.mig_mode == "unknown" or not dev.uuid:
                self.status.pop(dev.uuid, None)
                continue
            status, did = self._step(dev, held)
            changed |= did
            self._record(dev, status)
        return changed

    def _record(self, dev: GpuDevice, status: ModeStatus | None) -> None:
        before = self.status.get(dev.uuid)
        if status is None:
            if before is not None and before.state == "pending":
                status = ModeStatus("enabled" if dev.mig_mode == "enabled" else "disabled",
                                    f"MIG mode on GPU {dev.index} ({dev.uuid}) is now {dev.mig_mode}")
            else:
                self.status.pop(dev.uuid, None)
                return
        self.status[dev.uuid] = status
        if before is not None and before.state == status.state:
            return  # log and post once per change of state, not once per pass
        level = logging.WARNING if status.state in ("pending", "failed") else logging.INFO
        log.log(level, "%s", status.message)
        if status.state in _EVENT:
            reason, kind = _EVENT[status.state]
            self._notify(reason, status.message, kind)

    def _step(self, dev: GpuDevice, held: Mapping[str, tuple[Holder, HeldInstance]]) -> tuple[ModeStatus | None, bool]:
        mode, explicit = self.config.mode_of(dev.uuid, dev.index)
        want = True if mode == MODE_MIG else (False if explicit else None)
        if want is None:
            return None, False
        if dev.mig_mode == "pending":
            if _direction(dev) == want:
                verb = "enable" if want else "disable"
                return ModeStatus("pending", f"MIG mode {verb} on GPU {dev.index} ({dev.uuid}) is pending: a GPU "
                                  f"reset (`nvidia-smi -i {dev.index} -r` on an idle GPU) or a node reboot is "
                                  "required; hami-mig never resets a GPU"), False
            if not self.config.manage_mig_mode:
                return None, False
            return self._change(dev, want)  # cancel a pending change the config no longer wants: no reset
        if (dev.mig_mode == "enabled") == want:
            return None, False
        verb = "enable" if want else "disable"
        if not self.config.manage_mig_mode:
            return ModeStatus("hint", f"start hami-mig with --manage-mig-mode to let it {verb} MIG on GPU "
                              f"{dev.index} once the GPU is idle"), False
        busy = (self._busy(dev, held) if not want else "") or self._gpu_busy(dev)
        if busy:
            return ModeStatus("waiting", f"MIG mode {verb} on GPU {dev.index} ({dev.uuid}) waits: {busy}"), False
        if not want and dev.instances:
            ops = [Operation("destroy", dev.index, hw.profile, hw.start, dev.uuid) for hw in dev.instances]
            try:
                self.backend.apply(ops, tuple(held))
            except (ApplyError, HardwareError) as exc:
                return ModeStatus("failed", f"cannot disable MIG on GPU {dev.index}: removing its free instances "
                                  f"failed: {exc}"), True
        return self._change(dev, want)

    def _change(self, dev: GpuDevice, want: bool) -> tuple[ModeStatus, bool]:
        try:
            change: MigModeChange = self.backend.set_mig_mode(dev.index, want)
        except HardwareError as exc:
            return ModeStatus("failed", f"cannot {'enable' if want else 'disable'} MIG mode: {exc}"), False
        if change.active:
            return ModeStatus("enabled" if want else "disabled", change.describe()), True
        return ModeStatus("pending", change.describe()), True

    def _gpu_busy(self, dev: GpuDevice) -> str:
        try:
            pids = self.backend.gpu_processes(dev.index)
        except HardwareError as exc:
            return f"cannot list the GPU's processes ({exc})"
        if pids is None:
            return "NVML does not say which processes use the GPU (no permission), so it is treated as busy"
        if pids:
            names = ", ".join(f"{comm(self.config.proc_root, p) or '?'} (pid {p})" for p in pids[:6])
            return f"processes run on it: {names}"
        return ""

    @staticmethod
    def _busy(dev: GpuDevice, held: Mapping[str, tuple[Holder, HeldInstance]]) -> str:
        holders = sorted({holder.label() for _u, (holder, h) in held.items() if h.gpu_uuid == dev.uuid})
        if holders:
            return f"pods hold its MIG instances ({', '.join(holders[:6])})"
        busy = [f"{hw.profile}@{hw.start}" for hw in dev.instances if hw.busy]
        if busy:
            return f"its MIG instances {', '.join(busy)} have (or may have) processes"
        foreign = [f"{hw.profile}@{hw.start}" for hw in dev.instances if hw.compute and not hw.standard]
        if foreign:
            return f"its instances {', '.join(foreign)} were split into compute instances outside hami-mig"
        return ""
