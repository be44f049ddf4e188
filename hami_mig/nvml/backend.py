"""The NVML session: the single object through which hami-mig reads and changes GPUs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterable
from types import TracebackType
from typing import Any

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.plan import Operation
from hami_mig.mig.state import GpuState
from hami_mig.nvml import errors as E
from hami_mig.nvml.apply import ApplyResult, apply_plan
from hami_mig.nvml.device import GpuDevice, enable_hint
from hami_mig.nvml.discovery import read_gpu, unreadable_gpu
from hami_mig.nvml.holders import GpuHolder, gpu_minor, gpu_processes, nvml_holders
from hami_mig.nvml.locks import GpuLocks
from hami_mig.nvml.migmode import MigDeviceNodes, MigModeChange, mig_device_nodes, set_mig_mode
from hami_mig.nvml.profiles import decode


class NvmlBackend:
    """Wraps a pynvml-like module (real pynvml, or the simulator in tests) with discovery and safe apply.

    Changes MIG mode only through `set_mig_mode` (the agent's opt-in `--manage-mig-mode`). Profile tables
    are cached per GPU UUID: the driver fixes them while MIG is on.
    """

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml: Any = nvml
        self.locks = GpuLocks()
        self._models: dict[str, GpuModel] = {}
        self._models_guard = threading.Lock()
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
            with contextlib.suppress(self.nvml.NVMLError):
                self.nvml.nvmlShutdown()

    def __enter__(self) -> NvmlBackend:
        self.init()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown()

    # -- discovery -------------------------------------------------------------------------------
    def gpu_count(self) -> int:
        return int(self.nvml.nvmlDeviceGetCount())

    def device(self, index: int) -> GpuDevice:
        """One GPU, fully read. An unreadable GPU (lost, no permission) comes back with mig_mode "unknown"."""
        try:
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            cached = self._models.get(decode(self.nvml.nvmlDeviceGetUUID(handle)))
            dev = read_gpu(self.nvml, index, cached)
        except self.nvml.NVMLError as exc:
            if E.nvml_code(exc) == E.UNINITIALIZED:
                raise
            return unreadable_gpu(self.nvml, index, exc)
        if dev.model is not None:
            with self._models_guard:
                self._models.setdefault(dev.uuid, dev.model)
        return dev

    def devices(self) -> tuple[GpuDevice, ...]:
        """Every GPU on the node; read-only and safe on any production node."""
        return tuple(self.device(i) for i in range(self.gpu_count()))

    def states(self, in_use_uuids: Collection[str] = ()) -> dict[int, GpuState]:
        """GpuState per MIG-enabled GPU index, for the planner."""
        return {d.index: d.to_gpu_state(in_use_uuids) for d in self.devices() if d.mig_enabled}

    # -- handles for execution ---------------------------------------------------------------------
    def handle(self, index: int) -> tuple[Any, str]:
        """(device handle, GPU UUID) for an index, or HardwareError naming the NVML error."""
        try:
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            return handle, decode(self.nvml.nvmlDeviceGetUUID(handle))
        except self.nvml.NVMLError as exc:
            raise E.HardwareError(f"GPU {index}: {E.describe_nvml(exc)}", E.nvml_code(exc)) from None

    def model(self, index: int) -> GpuModel:
        """NVML's profile table for GPU `index` (cached); MigDisabledError when MIG is not on."""
        _handle, uuid = self.handle(index)
        with self._models_guard:
            if uuid in self._models:
                return self._models[uuid]
        dev = self.device(index)
        if not dev.mig_enabled or dev.model is None:
            raise E.MigDisabledError(dev.message or enable_hint(index))
        return dev.model

    # -- changes ---------------------------------------------------------------------------------
    def apply(self, operations: Iterable[Operation], protected: Collection[str] = ()) -> ApplyResult:
        """Run a plan under the per-GPU locks, rolling back this plan's creations on any failure."""
        return apply_plan(self, tuple(operations), protected)

    def set_mig_mode(self, index: int, enable: bool) -> MigModeChange:
        """nvmlDeviceSetMigMode under the GPU's lock; the caller checked the GPU is idle. Never resets a GPU."""
        handle, uuid = self.handle(index)
        with self.locks.hold([uuid]):
            change = set_mig_mode(self.nvml, handle, index, enable)
        with self._models_guard:  # the profile table is re-read once the new mode is active
            self._models.pop(uuid, None)
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
