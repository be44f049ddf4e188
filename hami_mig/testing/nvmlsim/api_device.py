"""Simulated pynvml calls on devices: init, identity, memory, MIG mode, MIG device handles, processes."""

from __future__ import annotations

from typing import Any

import pynvml

from hami_mig.testing.nvmlsim import driver, symbols
from hami_mig.testing.nvmlsim.core import KIND_GPU, KIND_MIG, SimCore, make_handle, nvml_call, unpack_handle
from hami_mig.testing.nvmlsim.state import SimGpu, SimState

MIB = 1 << 20
DRIVER_VERSION = symbols.DEFAULT_DRIVER


def _ampere(gpu: SimGpu) -> bool:
    return any(tag in gpu.model for tag in ("A100", "A30"))


class DeviceCalls(SimCore):
    """pynvml's device-level functions, same names, argument order and return types."""

    # -- library ---------------------------------------------------------------------------------
    @nvml_call
    def nvmlInitWithFlags(self, state: SimState, flags: int) -> None:
        with self._init_lock:
            self._refcount += 1

    @nvml_call
    def nvmlInit(self, state: SimState) -> None:
        with self._init_lock:
            self._refcount += 1

    @nvml_call
    def nvmlShutdown(self, state: SimState) -> None:
        with self._init_lock:
            self._refcount -= 1

    @nvml_call
    def nvmlSystemGetDriverVersion(self, state: SimState) -> str:
        return self.driver_version

    @nvml_call
    def nvmlSystemGetCudaDriverVersion(self, state: SimState) -> int:
        return symbols.cuda_version(self.driver_branch)

    @nvml_call
    def nvmlSystemGetCudaDriverVersion_v2(self, state: SimState) -> int:
        return symbols.cuda_version(self.driver_branch)

    @nvml_call
    def nvmlSystemGetNVMLVersion(self, state: SimState) -> str:
        return f"{symbols.cuda_version(self.driver_branch) // 1000}.{self.driver_version}"

    # -- identity --------------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetCount(self, state: SimState) -> int:
        return len(state.gpus)

    @nvml_call
    def nvmlDeviceGetHandleByIndex(self, state: SimState, index: int) -> Any:
        if not 0 <= index < len(state.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if state.gpus[index].lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return make_handle(KIND_GPU, index, 0, pynvml.c_nvmlDevice_t)

    @nvml_call
    def nvmlDeviceGetHandleByUUID(self, state: SimState, uuid: str) -> Any:
        for gpu in state.gpus:
            if gpu.uuid == uuid:
                if gpu.lost:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                return make_handle(KIND_GPU, gpu.index, 0, pynvml.c_nvmlDevice_t)
            for gi in gpu.gis:
                for ci in gi.cis:
                    if ci.uuid == uuid:
                        return make_handle(KIND_MIG, gpu.index, ci.serial, pynvml.c_nvmlDevice_t)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @nvml_call
    def nvmlDeviceGetIndex(self, state: SimState, handle: Any) -> int:
        return self._gpu(state, handle, allow_mig=False).index

    @nvml_call
    def nvmlDeviceGetMinorNumber(self, state: SimState, handle: Any) -> int:
        gpu = self._gpu(state, handle, allow_mig=False)
        return gpu.index if gpu.minor is None else gpu.minor

    @nvml_call
    def nvmlDeviceGetName(self, state: SimState, handle: Any) -> str:
        mig = self._mig(state, handle)
        if mig is None:
            gpu = self._gpu(state, handle)
            return gpu.name or gpu.model
        gpu, gi, _ci = mig
        return f"{gpu.name or gpu.model} MIG {driver.gi_profile(driver.model_of(gpu.model), gi).name}"

    @nvml_call
    def nvmlDeviceGetUUID(self, state: SimState, handle: Any) -> str:
        mig = self._mig(state, handle)
        return self._gpu(state, handle).uuid if mig is None else mig[2].uuid

    @nvml_call
    def nvmlDeviceGetNumaNodeId(self, state: SimState, handle: Any) -> int:
        node = self._gpu(state, handle, allow_mig=False).numa_node
        if node is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return node

    @nvml_call
    def nvmlDeviceGetMemoryInfo(self, state: SimState, handle: Any, version: int | None = None) -> Any:
        mig = self._mig(state, handle)
        gpu = self._gpu(state, handle)
        model = driver.model_of(gpu.model)
        if mig is None:
            total = driver.total_memory_mib(model) * MIB
            used = sum(p[1] for gi in gpu.gis for ci in gi.cis for p in ci.processes) * MIB
        else:
            total = driver.gi_profile(model, mig[1]).memory_mib * MIB
            used = sum(p[1] for p in mig[2].processes) * MIB
        if not version:
            return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)
        return pynvml.c_nvmlMemory_v2_t(version=version, total=total, reserved=0, free=total - used, used=used)

    # -- MIG mode --------------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetMigMode(self, state: SimState, device: Any) -> list[int]:
        gpu = self._gpu(state, device, allow_mig=False)
        if not gpu.mig_capable:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig_current, gpu.mig_pending]

    @nvml_call
    def nvmlDeviceSetMigMode(self, state: SimState, device: Any, mode: int) -> int:
        """Hopper+ switches at once; Ampere, or a GPU with processes, stays pending until `reset_gpu`
        [I: as if another client held it]."""
        gpu = self._gpu(state, device, allow_mig=False)
        if not gpu.mig_capable:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if mode not in (0, 1):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if mode == 0 and gpu.gis:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_IN_USE)
        gpu.mig_pending = mode
        if (_ampere(gpu) or gpu.gpu_processes) and gpu.mig_current != mode:
            return int(pynvml.NVML_ERROR_IN_USE)
        gpu.mig_current = mode
        return int(pynvml.NVML_SUCCESS)

    def reset_gpu(self, index: int) -> None:
        """Test control: a GPU reset applies a pending MIG mode and drops every GI/CI (they never survive one)."""
        with self.store.transaction() as state:
            gpu = state.gpus[index]
            gpu.mig_current = gpu.mig_pending
            gpu.gis.clear()
            gpu.lost = False
            self.store.mark_dirty()

    # -- MIG devices -----------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetMaxMigDeviceCount(self, state: SimState, device: Any) -> int:
        return driver.max_mig_devices(self._gpu(state, device, allow_mig=False))

    @nvml_call
    def nvmlDeviceGetMigDeviceHandleByIndex(self, state: SimState, device: Any, index: int) -> Any:
        gpu = self._gpu(state, device, allow_mig=False)
        self._mig_on(gpu)
        if not 0 <= index < driver.max_mig_devices(gpu):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        slot = driver.mig_device_slots(gpu).get(index)
        if slot is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return make_handle(KIND_MIG, gpu.index, slot[1].serial, pynvml.c_nvmlDevice_t)

    @nvml_call
    def nvmlDeviceIsMigDeviceHandle(self, state: SimState, device: Any) -> Any:
        self._gpu(state, device)
        unpacked = unpack_handle(device)
        return pynvml.c_uint(1 if unpacked is not None and unpacked[0] == KIND_MIG else 0)

    @nvml_call
    def nvmlDeviceGetGpuInstanceId(self, state: SimState, device: Any) -> int:
        mig = self._mig(state, device)
        if mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return mig[1].id

    @nvml_call
    def nvmlDeviceGetComputeInstanceId(self, state: SimState, device: Any) -> int:
        mig = self._mig(state, device)
        if mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return mig[2].id

    @nvml_call
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, state: SimState, migDevice: Any) -> Any:
        mig = self._mig(state, migDevice)
        if mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return make_handle(KIND_GPU, mig[0].index, 0, pynvml.c_nvmlDevice_t)

    # -- processes -------------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetComputeRunningProcesses(self, state: SimState, handle: Any) -> list[Any]:
        """pynvml's friendly objects: pid, usedGpuMemory (bytes), gpuInstanceId, computeInstanceId."""
        return self._running(state, handle)

    @nvml_call
    def nvmlDeviceGetComputeRunningProcesses_v3(self, state: SimState, handle: Any) -> list[Any]:
        return self._running(state, handle)

    @nvml_call
    def nvmlDeviceGetComputeRunningProcesses_v2(self, state: SimState, handle: Any) -> list[Any]:
        return self._running(state, handle)

    def _running(self, state: SimState, handle: Any) -> list[Any]:
        mig = self._mig(state, handle)
        gpu = self._gpu(state, handle)
        if gpu.deny_processes:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        pairs = [(gi, ci) for gi in gpu.gis for ci in gi.cis] if mig is None else [(mig[1], mig[2])]
        out = []
        if mig is None:
            for pid, used in gpu.gpu_processes:
                info = pynvml.c_nvmlProcessInfo_v2_t(pid=pid, usedGpuMemory=used * MIB, gpuInstanceId=0xFFFFFFFF,
                                                     computeInstanceId=0xFFFFFFFF)
                out.append(pynvml.nvmlStructToFriendlyObject(info))
        for gi, ci in pairs:
            for pid, used in ci.processes:
                info = pynvml.c_nvmlProcessInfo_v2_t(pid=pid, usedGpuMemory=used * MIB, gpuInstanceId=gi.id,
                                                     computeInstanceId=ci.id)
                out.append(pynvml.nvmlStructToFriendlyObject(info))
        return out
