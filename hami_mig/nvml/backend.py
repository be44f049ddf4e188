"""The NVML session: the single object through which hami-mig reads and changes GPUs."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.plan import Operation
from hami_mig.mig.state import GpuState
from hami_mig.nvml import errors as E
from hami_mig.nvml.apply import ApplyResult, apply_plan
from hami_mig.nvml.device import GpuDevice, enable_hint
from hami_mig.nvml.discovery import unreadable_gpu
from hami_mig.nvml.facts import FactsCache, GpuFacts
from hami_mig.nvml.holders import GpuHolder, gpu_minor, gpu_processes, nvml_holders
from hami_mig.nvml.locks import GpuLocks
from hami_mig.nvml.migmode import MigDeviceNodes, MigModeChange, mig_device_nodes, set_mig_mode
from hami_mig.nvml.reader import read_device


class ChangeObserver(Protocol):
    """Told about every change made through the backend (the agent's inventory keeps its picture with it)."""

    def known(self) -> dict[int, GpuDevice]: ...
    def changing(self, gpus: Collection[int]) -> None: ...
    def applied(self, ops: Sequence[Operation], result: ApplyResult) -> None: ...
    def apply_failed(self, ops: Sequence[Operation], exc: BaseException) -> None: ...
    def mode_changed(self, gpu: int) -> None: ...


class NvmlBackend:
    """Wraps a pynvml-like module (real pynvml, or the simulator in tests) with discovery and safe apply.

    Changes MIG mode only through `set_mig_mode` (the agent's opt-in `--manage-mig-mode`). What does not
    change while the driver is loaded (handles, UUIDs, names, memory, profile tables and placements) is
    read once per GPU (`facts`).
    """

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml: Any = nvml
        self.locks = GpuLocks()
        self.facts = FactsCache(nvml)
        self.observer: ChangeObserver | None = None
        self._open = False

    # -- session ---------------------------------------------------------------------------------
    def init(self) -> None:
        """nvmlInit, turning a missing driver or library into one actionable line."""
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise E.NvmlUnavailableError(
                f"cannot initialise NVML: {E.describe_nvml(exc)}; is the NVIDIA driver installed and are "
                "/dev/nvidia* and libnvidia-ml.so.1 visible to this process? (use --backend sim to try hami-mig "
                "without a GPU)",
                E.nvml_code(exc),
            ) from None
        except OSError as exc:
            raise E.NvmlUnavailableError(f"cannot initialise NVML: {exc}") from None
        self._open = True

    def shutdown(self) -> None:
        if self._open:
            self._open = False
            self.facts.forget()
            with contextlib.suppress(self.nvml.NVMLError):
                self.nvml.nvmlShutdown()

    def __enter__(self) -> NvmlBackend:
        self.init()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown()

    # -- discovery -------------------------------------------------------------------------------
    def gpu_count(self) -> int:
        """NVML's GPU count, asked again (the count `facts` holds is what a plan is checked against)."""
        self.facts.forget_count()
        return self.facts.count()

    def device(self, index: int) -> GpuDevice:
        """One GPU, fully read. An unreadable GPU (lost, no permission) comes back with mig_mode "unknown"."""
        try:
            return read_device(self.facts, index)
        except self.nvml.NVMLError as exc:
            if E.nvml_code(exc) == E.UNINITIALIZED:
                raise
            self.facts.forget(index)  # read its facts again once it answers
            return unreadable_gpu(self.nvml, index, exc)

    def devices(self) -> tuple[GpuDevice, ...]:
        """Every GPU on the node; read-only and safe on any production node."""
        return tuple(self.device(i) for i in range(self.gpu_count()))

    def states(self, in_use_uuids: Collection[str] = ()) -> dict[int, GpuState]:
        """GpuState per MIG-enabled GPU index, for the planner."""
        return {d.index: d.to_gpu_state(in_use_uuids) for d in self.devices() if d.mig_enabled}

    # -- handles for execution ---------------------------------------------------------------------
    def gpu_facts(self, index: int) -> GpuFacts:
        """The GPU's facts read once (handle, UUID ...), or HardwareError naming the NVML error."""
        try:
            return self.facts.get(index)
        except self.nvml.NVMLError as exc:
            raise E.HardwareError(f"GPU {index}: {E.describe_nvml(exc)}", E.nvml_code(exc)) from None

    def handle(self, index: int) -> tuple[Any, str]:
        """(device handle, GPU UUID) for an index, or HardwareError naming the NVML error."""
        facts = self.gpu_facts(index)
        return facts.handle, facts.uuid

    def model(self, index: int) -> GpuModel:
        """NVML's profile table for GPU `index` (read once); MigDisabledError when MIG is not on."""
        facts = self.gpu_facts(index)
        if facts.model is not None:
            return facts.model
        dev = self.device(index)
        if not dev.mig_enabled or dev.model is None:
            raise E.MigDisabledError(dev.message or enable_hint(index))
        return dev.model

    # -- changes ---------------------------------------------------------------------------------
    def observe(self, observer: ChangeObserver | None) -> None:
        """Report every apply and MIG mode change to `observer` (one at a time)."""
        self.observer = observer

    def apply(self, operations: Iterable[Operation], protected: Collection[str] = ()) -> ApplyResult:
        """Run a plan under the per-GPU locks, rolling back this plan's creations on any failure."""
        ops = tuple(operations)
        observer = self.observer
        if observer is None:
            return apply_plan(self, ops, protected)
        observer.changing({op.gpu_index for op in ops})
        try:
            result = apply_plan(self, ops, protected, observer.known())
        except BaseException as exc:
            observer.apply_failed(ops, exc)
            raise
        observer.applied(ops, result)
        return result

    def set_mig_mode(self, index: int, enable: bool) -> MigModeChange:
        """nvmlDeviceSetMigMode under the GPU's lock; the caller checked the GPU is idle. Never resets a GPU."""
        handle, uuid = self.handle(index)
        observer = self.observer
        if observer is not None:
            observer.changing([index])
        try:
            with self.locks.hold([uuid]):
                change = set_mig_mode(self.nvml, handle, index, enable)
        finally:
            facts = self.facts.known(index)
            if facts is not None:  # the profile table is read again once the new mode is active
                facts.forget_mig()
            if observer is not None:
                observer.mode_changed(index)
        return change

    # -- facts for CDI specs and IN_USE reports ----------------------------------------------------
    def mig_device_nodes(self, mig_uuid: str) -> MigDeviceNodes:
        return mig_device_nodes(self.nvml, mig_uuid)

    def gpu_minor(self, index: int) -> int | None:
        handle, _uuid = self.handle(index)
        return gpu_minor(self.nvml, handle)

    def gpu_processes(self, index: int) -> tuple[int, ...] | None:
        """Pids on the physical GPU; None when NVML will not say (treat as busy)."""
        handle, _uuid = self.handle(index)
        try:
            return gpu_processes(self.nvml, handle)
        except self.nvml.NVMLError as exc:
            raise E.HardwareError(f"GPU {index}: {E.describe_nvml(exc)}", E.nvml_code(exc)) from None

    def holders(self, index: int, proc_root: str = "/proc") -> list[GpuHolder]:
        """Processes NVML reports on GPU `index` and its MIG devices, named from `proc_root`."""
        handle, _uuid = self.handle(index)
        return nvml_holders(self.nvml, handle, proc_root, gpu_label=f"GPU {index}")
