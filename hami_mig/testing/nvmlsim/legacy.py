"""The raw C entry points of older drivers that pynvml has no binding for, as `_nvmlGetFunctionPointer` gives them.

pynvml binds only `…PossiblePlacements_v2`, `…ComputeInstanceGetInfo_v2` and `…RunningProcesses_v2/_v3`;
code that must run on an older driver calls the v1 symbol through pynvml's `_nvmlGetFunctionPointer`
with ctypes arguments and reads an nvmlReturn_t. The simulator answers those calls the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pynvml

from hami_mig.testing.nvmlsim import driver, symbols
from hami_mig.testing.nvmlsim.core import KIND_GI, KIND_MIG, SimCore, deref, make_handle, nvml_call
from hami_mig.testing.nvmlsim.state import SimState

MIB = 1 << 20
_C_PREFIX = "_c_"
# Bindings that pick their symbol by a version argument: v2 is `<name>V`.
_VERSION_ARGUMENT = ("nvmlDeviceGetGpuInstanceProfileInfo", "nvmlGpuInstanceGetComputeInstanceProfileInfo")


class CFunction:
    """A C function as ctypes exposes it: positional ctypes arguments in, an nvmlReturn_t (int) out."""

    def __init__(self, name: str, body: Callable[..., Any] | None) -> None:
        self.__name__ = name
        self._body = body

    def __call__(self, *args: Any) -> int:
        if self._body is None:
            raise NotImplementedError(f"the NVML simulator does not emulate the raw C entry point {self.__name__}; "
                                      "call its pynvml binding")
        try:
            self._body(*args)
        except pynvml.NVMLError as exc:
            return int(exc.value)
        return int(pynvml.NVML_SUCCESS)


class LegacyCalls(SimCore):
    """`_nvmlGetFunctionPointer` over the symbols this simulated driver branch exports, and the v1 bodies."""

    def _nvmlGetFunctionPointer(self, name: str) -> CFunction:
        if self._refcount == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if name not in self.exported_symbols():
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return CFunction(name, getattr(self, _C_PREFIX + name, None))

    def exported_symbols(self) -> frozenset[str]:
        """Every C symbol the simulated libnvidia-ml of this branch has."""
        names = {n for n in dir(type(self)) if n.startswith("nvml")}
        names |= {symbols.BINDING_SYMBOL.get(n, n) for n in names}
        names |= {n[len(_C_PREFIX):] for n in dir(type(self)) if n.startswith(_C_PREFIX + "nvml")}
        names |= {n + "V" for n in _VERSION_ARGUMENT}
        return frozenset(n for n in names if symbols.exported(n, self.driver_branch))

    # -- v1 bodies (R450): same rules as the bindings, older calling conventions ---------------------
    @nvml_call
    def _c_nvmlDeviceGetGpuInstancePossiblePlacements(self, state: SimState, device: Any, profileId: Any,
                                                      placements: Any, count: Any) -> None:
        """v1 cannot be asked for the count: the buffer must hold every placement of the profile."""
        if placements is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpu(state, device, allow_mig=False)
        self._mig_on(gpu)
        driver.fill_placements(deref(placements), deref(count), driver.by_id(driver.gpu_model(gpu), _int(profileId)))

    @nvml_call
    def _c_nvmlComputeInstanceGetInfo(self, state: SimState, computeInstance: Any, info: Any) -> None:
        """v1 fills device, gpuInstance, id and profileId (placement came with v2)."""
        gpu, gi, ci = self._ci(state, computeInstance)
        out = deref(info)
        out.device = make_handle(KIND_MIG, gpu.index, ci.serial, pynvml.c_nvmlDevice_t)
        out.gpuInstance = make_handle(KIND_GI, gpu.index, gi.serial, pynvml.c_nvmlGpuInstance_t)
        out.id = ci.id
        out.profileId = ci.profile

    @nvml_call
    def _c_nvmlDeviceGetComputeRunningProcesses(self, state: SimState, device: Any, count: Any, infos: Any) -> None:
        """v1 process info is {pid, usedGpuMemory}; a short buffer gets INSUFFICIENT_SIZE and the count."""
        mig = self._mig(state, device)
        gpu = self._gpu(state, device)
        if gpu.deny_processes:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        procs = list(gpu.gpu_processes) if mig is None else []
        cis = [ci for gi in gpu.gis for ci in gi.cis] if mig is None else [mig[2]]
        procs += [p for ci in cis for p in ci.processes]
        n = deref(count)
        if infos is None or n.value < len(procs):
            n.value = len(procs)
            if procs:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
            return
        array = deref(infos)
        for i, (pid, used) in enumerate(procs):
            array[i].pid = pid
            array[i].usedGpuMemory = used * MIB
        n.value = len(procs)


def _int(value: Any) -> int:
    return int(getattr(value, "value", value))
