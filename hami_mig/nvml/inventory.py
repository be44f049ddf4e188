"""The agent's picture of every GPU: read in full once, kept current from the agent's own changes, checked
cheaply where a plan touches, and read in full again now and then to notice what others changed.

Safety never rests on this picture: destroying an instance re-checks at execution time that nobody
holds it and nothing runs on it, and a create where the picture shows room fails cleanly when
someone else took it meanwhile; the GPU is then read again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hami_mig.mig.plan import Operation
from hami_mig.nvml import errors as E
from hami_mig.nvml.apply import ApplyResult, StepResult
from hami_mig.nvml.device import GpuDevice, HwComputeInstance, HwInstance
from hami_mig.nvml.discovery import processes
from hami_mig.nvml.reader import ProcessMap, process_map

if TYPE_CHECKING:
    from hami_mig.nvml.backend import NvmlBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resync:
    """What a full re-read found: `changed` anything at all (processes too), `outside` what others changed."""

    changed: bool = False
    outside: tuple[str, ...] = ()


def _label(hw: HwInstance) -> str:
    uuids = hw.uuids()
    return f"{hw.profile}@{hw.start} ({', '.join(uuids) if uuids else 'no compute instance'})"


def differences(old: GpuDevice, new: GpuDevice) -> list[str]:
    """What changed on a GPU between two readings, processes aside (those come and go all the time)."""
    where = f"GPU {new.index}"
    out: list[str] = []
    if old.uuid and new.uuid and old.uuid != new.uuid:
        out.append(f"{where} is now {new.uuid} (was {old.uuid})")
    if old.mig_mode != new.mig_mode:
        why = f" ({new.message})" if new.mig_mode == "unknown" and new.message else ""
        out.append(f"{where}: MIG mode {old.mig_mode} -> {new.mig_mode}{why}")
    before = {(hw.profile, hw.start, hw.gi_id, hw.uuids()): hw for hw in old.instances}
    after = {(hw.profile, hw.start, hw.gi_id, hw.uuids()): hw for hw in new.instances}
    out += [f"{where}: {_label(after[k])} appeared" for k in sorted(after.keys() - before.keys())]
    out += [f"{where}: {_label(before[k])} is gone" for k in sorted(before.keys() - after.keys())]
    return out


def with_processes(dev: GpuDevice, procs: Mapping[tuple[int, int], tuple[int, ...]],
                   only: Collection[str] | None = None) -> GpuDevice:
    """The device with the processes of its MIG devices replaced (all of them, or those named in `only`)."""
    def ci(gi_id: int, c: HwComputeInstance) -> HwComputeInstance:
        if c.mig_uuid is None or (only is not None and c.mig_uuid not in only):
            return c
        return replace(c, processes=procs.get((gi_id, c.ci_id), ()))
    return replace(dev, instances=tuple(
        replace(hw, compute=tuple(ci(hw.gi_id, c) for c in hw.compute)) for hw in dev.instances))


def _created(dev: GpuDevice, step: StepResult) -> HwInstance | None:
    """The instance a create made, as a full read would show it; None when the step does not say enough."""
    rec = step.instance
    if rec is None or dev.model is None or rec.ci_id is None or rec.ci_profile_id is None:
        return None
    profile = dev.model.profile(rec.profile)
    ci = HwComputeInstance(rec.ci_id, rec.ci_profile_id, profile.compute_slices, rec.mig_uuid, rec.memory_mib, ())
    return HwInstance(profile.name, rec.start, rec.size, rec.gi_id, profile.smi_profile_id, profile.compute_slices,
                      profile.memory_mib, (ci,))


def _busy(dev: GpuDevice) -> tuple[tuple[int, int, bool], ...]:
    """Which compute instances are busy: all a plan reads of the processes (`GpuDevice.to_gpu_state`)."""
    return tuple((hw.gi_id, ci.ci_id, ci.busy) for hw in dev.instances for ci in hw.compute)


class NvmlInventory:
    """Every GPU as last read or changed. Thread-safe: the agent's Allocates and reconcile passes change it,
    a background thread re-reads it (`resync`) without holding up either."""

    def __init__(self, backend: NvmlBackend) -> None:
        self.backend = backend
        self._devices: dict[int, GpuDevice] = {}
        self._generation: Counter[int] = Counter()  # bumped on every change the agent makes or sees
        self._changing: Counter[int] = Counter()  # changes in flight per GPU (a resync leaves those GPUs be)
        self._lock = threading.Lock()
        self._outside_failure = False
        self.loaded = False
        backend.observe(self)

    # -- reading ---------------------------------------------------------------------------------
    def devices(self) -> tuple[GpuDevice, ...]:
        """The current picture; the first call reads every GPU."""
        if not self.loaded:
            self.resync()
        with self._lock:
            return tuple(self._devices[i] for i in sorted(self._devices))

    def resync(self) -> Resync:
        """Read every GPU in full and log what others changed since the last reading. A GPU the agent changes
        meanwhile keeps the agent's own picture (newer than this reading); the next resync reads it again."""
        count = self.backend.gpu_count()
        changed, outside = False, []
        for index in range(count):
            with self._lock:
                generation, busy = self._generation[index], self._changing[index]
            if busy:
                continue
            dev = self.backend.device(index)
            with self._lock:
                if self._generation[index] != generation or self._changing[index]:
                    continue
                old = self._devices.get(index)
                if old != dev:
                    changed = True
                    if old is not None and self.loaded:
                        outside += differences(old, dev)
                    self._devices[index] = dev
                    self._generation[index] += 1
        with self._lock:
            for index in [i for i in self._devices if i >= count]:
                outside.append(f"GPU {index} is no longer listed by NVML")
                del self._devices[index]
                changed = True
        if outside:
            log.warning("NVML: changed outside hami-mig since the last reading: %s", "; ".join(outside))
        self.loaded = True
        return Resync(changed, tuple(outside))

    def reread(self, index: int, why: str = "", *, ours: bool = False) -> list[str]:
        """Read one GPU in full now; what others changed on it (logged), unless the change was `ours`."""
        dev = self.backend.device(index)
        with self._lock:
            old = self._devices.get(index)
            self._devices[index] = dev
            self._generation[index] += 1
        outside = differences(old, dev) if old is not None and not ours else []
        if outside:
            log.warning("NVML: GPU %d changed outside hami-mig%s: %s", index, f" ({why})" if why else "",
                        "; ".join(outside))
        return outside

    def check(self, touches: Mapping[int, Collection[str]]) -> bool:
        """The per-Allocate check of only the GPUs a plan touches (GPU index -> MIG UUIDs it reuses): one
        process query per GPU and one handle lookup per reused UUID. True when the change can alter a plan,
        so it must be made again (a reused instance is gone, an instance turned busy or idle, an unknown
        instance runs processes); new pids on an instance that stays busy only refresh the picture."""
        nvml = self.backend.nvml
        changed = False
        for index, reused in sorted(touches.items()):
            with self._lock:
                dev = self._devices.get(index)
            if dev is None or not dev.mig_enabled:
                continue
            try:
                fresh = self._checked(dev, reused)
            except nvml.NVMLError as exc:
                if E.nvml_code(exc) == E.UNINITIALIZED:
                    raise
                fresh = None
            if fresh is None:
                self.reread(index, "found while checking it for an Allocate")
                changed = True
            elif fresh != dev:
                with self._lock:
                    if self._devices.get(index) == dev:
                        self._devices[index] = fresh
                        self._generation[index] += 1
                changed = changed or _busy(fresh) != _busy(dev)
        return changed

    def _checked(self, dev: GpuDevice, reused: Collection[str]) -> GpuDevice | None:
        """The device with fresh processes, or None when it must be read in full (something unknown on it)."""
        nvml = self.backend.nvml
        handles: dict[str, Any] = {}
        for uuid in sorted(reused):
            try:
                handles[uuid] = nvml.nvmlDeviceGetHandleByUUID(uuid)
            except nvml.NVMLError as exc:
                if E.nvml_code(exc) == E.NOT_FOUND:
                    return None
                raise
        procs = process_map(nvml, self.backend.gpu_facts(dev.index).handle)
        if procs is None:  # no aggregate answer: ask the MIG devices this plan reuses
            per_mig: ProcessMap = {}
            for uuid, handle in handles.items():
                hw = dev.by_uuid(uuid)
                ci = next((c for c in hw.compute if c.mig_uuid == uuid), None) if hw else None
                pids = processes(nvml, handle)
                if hw is None or ci is None or pids is None:
                    return None
                per_mig[(hw.gi_id, ci.ci_id)] = pids
            return with_processes(dev, per_mig, only=set(handles))
        known = {(hw.gi_id, ci.ci_id) for hw in dev.instances for ci in hw.compute if ci.mig_uuid}
        if set(procs) - known:
            return None
        return with_processes(dev, procs)

    def outside_change_seen(self) -> bool:
        """Whether the last failed change found the GPU changed by others (then a new plan may work); resets.
        Asked right after a failed apply, whose analysis (`apply_failed`) set it."""
        seen, self._outside_failure = self._outside_failure, False
        return seen

    # -- ChangeObserver: the backend reports every change made through it ---------------------------
    def known(self) -> dict[int, GpuDevice]:
        with self._lock:
            return dict(self._devices)

    def changing(self, gpus: Collection[int]) -> None:
        with self._lock:
            for index in gpus:
                self._changing[index] += 1

    def _done(self, gpus: Collection[int]) -> None:
        with self._lock:
            for index in gpus:
                self._changing[index] -= 1
                self._generation[index] += 1

    def applied(self, ops: Sequence[Operation], result: ApplyResult) -> None:
        """Each step says what it changed: the picture follows without reading the GPU again."""
        gpus = {op.gpu_index for op in ops}
        unexpected: set[int] = set()
        with self._lock:
            for step in result.steps:
                index = step.op.gpu_index
                dev = self._devices.get(index)
                if dev is None:
                    continue
                here = dev.find(step.op.profile, step.op.start)
                rec = step.instance
                if step.outcome == "created":
                    made = _created(dev, step)
                    if made is None:
                        unexpected.add(index)
                        continue
                    kept = tuple(hw for hw in dev.instances if hw is not here)
                    self._devices[index] = replace(dev, instances=tuple(
                        sorted((*kept, made), key=lambda i: (i.start, i.profile))))
                elif step.outcome == "destroyed":
                    self._devices[index] = replace(dev, instances=tuple(hw for hw in dev.instances if hw is not here))
                elif step.outcome == "existing":
                    if here is None or rec is None or rec.mig_uuid not in here.uuids():
                        unexpected.add(index)  # made by someone else (or an interrupted create): read it
                elif here is not None:  # "absent", though the picture had it: destroyed by someone else
                    unexpected.add(index)
        self._done(gpus)
        for index in sorted(unexpected):
            self._quiet_reread(index, "a change found the GPU other than expected")

    def apply_failed(self, ops: Sequence[Operation], exc: BaseException) -> None:
        """Read the GPUs again; whatever differs beyond this plan's own steps was changed by others."""
        gpus = {op.gpu_index for op in ops}
        self._done(gpus)
        rollback_failed = bool(getattr(exc, "rollback_failures", ()))
        ours = {(op.gpu_index, op.profile, op.start) for op in ops if op.op == "destroy" or rollback_failed}
        outside: list[str] = []
        for index in sorted(gpus):
            with self._lock:
                old = self._devices.get(index)
            if old is None:
                continue
            with contextlib.suppress(Exception):  # the plan's own error is what the caller must see
                new = self.backend.device(index)
                with self._lock:
                    self._devices[index] = new
                    self._generation[index] += 1
                gone = {(index, hw.profile, hw.start) for hw in old.instances} - {
                    (index, hw.profile, hw.start) for hw in new.instances}
                came = {(index, hw.profile, hw.start) for hw in new.instances} - {
                    (index, hw.profile, hw.start) for hw in old.instances}
                if (gone | came) - ours or old.mig_mode != new.mig_mode:
                    outside += differences(old, new)
        if outside:
            log.warning("NVML: a change failed on a GPU changed outside hami-mig: %s", "; ".join(outside))
        self._outside_failure = bool(outside)  # about this failure only (reconcile's failures must not linger)

    def mode_changed(self, gpu: int) -> None:
        self._done([gpu])
        self._quiet_reread(gpu, "", ours=True)

    def _quiet_reread(self, index: int, why: str, *, ours: bool = False) -> None:
        with contextlib.suppress(Exception):  # the next resync reads it again
            self.reread(index, why, ours=ours)
