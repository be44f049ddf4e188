"""Simulated pynvml calls on GPU and compute instances, filling pynvml's own ctypes structs."""

from __future__ import annotations

from typing import Any

import pynvml

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.testing.nvmlsim import driver, symbols
from hami_mig.testing.nvmlsim.core import KIND_CI, KIND_GI, KIND_MIG, SimCore, deref, make_handle, nvml_call
from hami_mig.testing.nvmlsim.state import SimCi, SimGi, SimGpu, SimState

# SMs per (compute slices, memory slices), from the doc (A100; H100-class; B200 1g/2-slice/2g [C], rest [I]).
_SMS = {
    "A": {(1, 1): 14, (1, 2): 14, (2, 2): 28, (3, 4): 42, (4, 4): 56, (7, 8): 98},
    "H": {(1, 1): 16, (1, 2): 26, (2, 2): 32, (3, 4): 60, (4, 4): 64, (7, 8): 132},
    "B": {(1, 1): 18, (1, 2): 30, (2, 2): 36, (3, 4): 66, (4, 4): 72, (7, 8): 144},
}
_DECODERS = {1: 0, 2: 1, 3: 2, 4: 2, 7: 5}


def _sms(model: GpuModel, p: Profile) -> int:
    family = "A" if ("A100" in model.name or "A30" in model.name) else "B" if "B200" in model.name else "H"
    return _SMS[family].get((p.compute_slices, p.memory_slices), 14 * p.compute_slices)


def gi_profile_info(model: GpuModel, p: Profile, version: int) -> Any:
    info = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t() if version == 2 else pynvml.c_nvmlGpuInstanceProfileInfo_t()
    media = 1 if p.media_extension or p.compute_slices == 7 else 0
    info.id = p.smi_profile_id
    info.isP2pSupported = 0
    info.sliceCount = p.compute_slices
    info.instanceCount = p.max_count
    info.multiprocessorCount = _sms(model, p)
    info.copyEngineCount = p.compute_slices
    info.decoderCount = _DECODERS.get(p.compute_slices, 0) + (1 if p.media_extension else 0)
    info.encoderCount = 0
    info.jpegCount = media
    info.ofaCount = media
    info.memorySizeMB = p.memory_mib
    if version == 2:
        info.name = f"MIG {p.name}".encode()
    return info


def ci_profile_info(model: GpuModel, gi_p: Profile, enum: int, version: int) -> Any:
    slices = driver.ci_slices(gi_p, enum)
    info = (pynvml.c_nvmlComputeInstanceProfileInfo_v2_t() if version == 2
            else pynvml.c_nvmlComputeInstanceProfileInfo_t())
    info.id = enum
    info.sliceCount = slices
    info.instanceCount = gi_p.compute_slices // slices
    info.multiprocessorCount = _sms(model, gi_p) * slices // gi_p.compute_slices
    info.sharedCopyEngineCount = gi_p.compute_slices
    info.sharedDecoderCount = _DECODERS.get(gi_p.compute_slices, 0)
    info.sharedEncoderCount = 0
    info.sharedJpegCount = 0
    info.sharedOfaCount = 0
    if version == 2:
        name = gi_p.name if slices == gi_p.compute_slices else f"{slices}c.{gi_p.name}"
        info.name = f"MIG {name}".encode()
    return info


class MigCalls(SimCore):
    """pynvml's GPU-instance and compute-instance functions."""

    def _mig_gpu(self, state: SimState, device: Any) -> tuple[SimGpu, GpuModel]:
        gpu = self._gpu(state, device, allow_mig=False)
        self._mig_on(gpu)
        return gpu, driver.gpu_model(gpu)

    @staticmethod
    def _gi_handle(gpu: SimGpu, gi: SimGi) -> Any:
        return make_handle(KIND_GI, gpu.index, gi.serial, pynvml.c_nvmlGpuInstance_t)

    @staticmethod
    def _ci_handle(gpu: SimGpu, ci: SimCi) -> Any:
        return make_handle(KIND_CI, gpu.index, ci.serial, pynvml.c_nvmlComputeInstance_t)

    # -- GPU instance profiles -------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetGpuInstanceProfileInfo(self, state: SimState, device: Any, profile: int, version: int = 2) -> Any:
        if version not in (1, 2):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        symbols.require("", self.driver_branch, "nvmlDeviceGetGpuInstanceProfileInfo" + ("V" if version == 2 else ""))
        _gpu, model = self._mig_gpu(state, device)
        return gi_profile_info(model, driver.by_enum(model, profile), version)

    nvmlDeviceGetGpuInstanceProfileInfoV = nvmlDeviceGetGpuInstanceProfileInfo

    @nvml_call
    def nvmlDeviceGetGpuInstanceProfileInfoById(self, state: SimState, device: Any, profileId: int) -> Any:
        _gpu, model = self._mig_gpu(state, device)
        return gi_profile_info(model, driver.by_id(model, profileId), 2)

    @nvml_call
    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, state: SimState, device: Any, profileId: int) -> int:
        gpu, model = self._mig_gpu(state, device)
        return driver.remaining_capacity(gpu, model, driver.by_id(model, profileId))

    @nvml_call
    def nvmlDeviceGetGpuInstancePossiblePlacements(self, state: SimState, device: Any, profileId: int,
                                                   placementsRef: Any, countRef: Any) -> int:
        _gpu, model = self._mig_gpu(state, device)
        p = driver.by_id(model, profileId)
        count = deref(countRef)
        if placementsRef is None:
            count.value = len(p.starts)
            return int(pynvml.NVML_SUCCESS)
        driver.fill_placements(deref(placementsRef), count, p)
        return int(pynvml.NVML_SUCCESS)

    # -- GPU instances ---------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceCreateGpuInstance(self, state: SimState, device: Any, profileId: int) -> Any:
        gpu, model = self._mig_gpu(state, device)
        return self._gi_handle(gpu, driver.create_gi(state, gpu, driver.by_id(model, profileId), None))

    @nvml_call
    def nvmlDeviceCreateGpuInstanceWithPlacement(self, state: SimState, device: Any, profileId: int,
                                                 placement: Any) -> Any:
        gpu, model = self._mig_gpu(state, device)
        plc = deref(placement)
        gi = driver.create_gi(state, gpu, driver.by_id(model, profileId), int(plc.start), int(plc.size))
        return self._gi_handle(gpu, gi)

    @nvml_call
    def nvmlGpuInstanceDestroy(self, state: SimState, gpuInstance: Any) -> int:
        gpu, gi = self._gi(state, gpuInstance)
        driver.destroy_gi(gpu, gi)
        return int(pynvml.NVML_SUCCESS)

    @nvml_call
    def nvmlDeviceGetGpuInstances(self, state: SimState, device: Any, profileId: int, gpuInstancesRef: Any,
                                  countRef: Any) -> int:
        gpu, model = self._mig_gpu(state, device)
        p = driver.by_id(model, profileId)
        if gpuInstancesRef is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        array = deref(gpuInstancesRef)
        found = sorted((gi for gi in gpu.gis if gi.profile == p.nvml_profile_id), key=lambda g: g.id)
        if len(array) < len(found):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
        for i, gi in enumerate(found):
            array[i] = self._gi_handle(gpu, gi)
        deref(countRef).value = len(found)
        return int(pynvml.NVML_SUCCESS)

    @nvml_call
    def nvmlDeviceGetGpuInstanceById(self, state: SimState, device: Any, gpuInstanceId: int) -> Any:
        gpu, _model = self._mig_gpu(state, device)
        for gi in gpu.gis:
            if gi.id == gpuInstanceId:
                return self._gi_handle(gpu, gi)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @nvml_call
    def nvmlGpuInstanceGetInfo(self, state: SimState, gpuInstance: Any) -> Any:
        gpu, gi = self._gi(state, gpuInstance)
        p = driver.gi_profile(driver.model_of(gpu.model), gi)
        return pynvml.c_nvmlGpuInstanceInfo_t(
            device=make_handle(1, gpu.index, 0, pynvml.c_nvmlDevice_t), id=gi.id, profileId=p.smi_profile_id,
            placement=pynvml.c_nvmlGpuInstancePlacement_t(start=gi.start, size=p.memory_slices))

    # -- compute instances -----------------------------------------------------------------------
    @nvml_call
    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, state: SimState, device: Any, profile: int,
                                                     engProfile: int, version: int = 2) -> Any:
        if version not in (1, 2):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        symbols.require("", self.driver_branch,
                        "nvmlGpuInstanceGetComputeInstanceProfileInfo" + ("V" if version == 2 else ""))
        if engProfile != pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu, gi = self._gi(state, device)
        model = driver.model_of(gpu.model)
        return ci_profile_info(model, driver.gi_profile(model, gi), profile, version)

    nvmlGpuInstanceGetComputeInstanceProfileInfoV = nvmlGpuInstanceGetComputeInstanceProfileInfo

    @nvml_call
    def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(self, state: SimState, gpuInstance: Any,
                                                           profileId: int) -> int:
        gpu, gi = self._gi(state, gpuInstance)
        return driver.ci_capacity(gi, driver.gi_profile(driver.model_of(gpu.model), gi), profileId)

    @nvml_call
    def nvmlGpuInstanceCreateComputeInstance(self, state: SimState, gpuInstance: Any, profileId: int) -> Any:
        gpu, gi = self._gi(state, gpuInstance)
        ci = driver.create_ci(state, gi, driver.gi_profile(driver.model_of(gpu.model), gi), profileId)
        return self._ci_handle(gpu, ci)

    @nvml_call
    def nvmlComputeInstanceDestroy(self, state: SimState, computeInstance: Any) -> int:
        _gpu, gi, ci = self._ci(state, computeInstance)
        driver.destroy_ci(gi, ci)
        return int(pynvml.NVML_SUCCESS)

    @nvml_call
    def nvmlGpuInstanceGetComputeInstances(self, state: SimState, gpuInstance: Any, profileId: int,
                                           computeInstancesRef: Any, countRef: Any) -> int:
        gpu, gi = self._gi(state, gpuInstance)
        driver.ci_slices(driver.gi_profile(driver.model_of(gpu.model), gi), profileId)
        if computeInstancesRef is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        array = deref(computeInstancesRef)
        found = sorted((ci for ci in gi.cis if ci.profile == profileId), key=lambda c: c.id)
        if len(array) < len(found):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
        for i, ci in enumerate(found):
            array[i] = self._ci_handle(gpu, ci)
        deref(countRef).value = len(found)
        return int(pynvml.NVML_SUCCESS)

    @nvml_call
    def nvmlGpuInstanceGetComputeInstanceById(self, state: SimState, gpuInstance: Any, computeInstanceId: int) -> Any:
        gpu, gi = self._gi(state, gpuInstance)
        for ci in gi.cis:
            if ci.id == computeInstanceId:
                return self._ci_handle(gpu, ci)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @nvml_call
    def nvmlComputeInstanceGetInfo_v2(self, state: SimState, computeInstance: Any) -> Any:
        gpu, gi, ci = self._ci(state, computeInstance)
        return pynvml.c_nvmlComputeInstanceInfo_t(
            device=make_handle(KIND_MIG, gpu.index, ci.serial, pynvml.c_nvmlDevice_t),
            gpuInstance=self._gi_handle(gpu, gi), id=ci.id, profileId=ci.profile,
            placement=pynvml.c_nvmlComputeInstancePlacement_t(start=ci.start, size=ci.size))

    nvmlComputeInstanceGetInfo = nvmlComputeInstanceGetInfo_v2
