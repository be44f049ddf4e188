"""NVML calls whose newest symbol an older driver lacks: use it, else fall back to the older symbol.

nvidia-ml-py binds only the newest version of some calls. On a driver whose libnvidia-ml.so lacks that
symbol the binding raises NVMLError_FunctionNotFound (pynvml `_nvmlGetFunctionPointer`), or, for the
unversioned process getters, `NVMLLibraryMismatchError` (`throwOnVersionMismatch`). go-nvml picks the
newest symbol the library has the same way (pkg/nvml/lib.go, `updateVersionedSymbols`). Where pynvml has
no binding for the old symbol we call it through `_nvmlGetFunctionPointer` with ctypes, as pynvml does.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Literal

from hami_mig.nvml import errors as E

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
OLDEST_SUPPORTED_BRANCH = 470  # R470: MIG UUIDs in their MIG-<uuid> form, placement-aware creates, v2 placements
OLDEST_READABLE_BRANCH = 450  # R450 brought MIG; `devices` and `doctor` read it through the v1 symbols


class ProcessInfoV1(ctypes.Structure):
    """nvmlProcessInfo_t of the R450 headers (v2 added gpuInstanceId/computeInstanceId)."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


def missing_symbol(nvml: Any, exc: BaseException) -> bool:
    """True when `exc` says the loaded library lacks the call's symbol (not that the call failed)."""
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    if isinstance(mismatch, type) and isinstance(exc, mismatch):
        return True
    return E.is_nvml_error(exc, nvml) and E.nvml_code(exc) == E.FUNCTION_NOT_FOUND


def _errors(nvml: Any) -> tuple[type[BaseException], ...]:
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    return (nvml.NVMLError, mismatch) if isinstance(mismatch, type) else (nvml.NVMLError,)


def c_function(nvml: Any, symbol: str) -> Any:
    """The library's C function for `symbol`; NVMLError FUNCTION_NOT_FOUND when this driver lacks it."""
    lookup = getattr(nvml, "_nvmlGetFunctionPointer", None)
    if lookup is None:
        raise nvml.NVMLError(E.FUNCTION_NOT_FOUND)
    return lookup(symbol)


def c_call(nvml: Any, symbol: str, *args: Any) -> None:
    """Call a C symbol pynvml has no binding for; a non-success return becomes pynvml's NVMLError."""
    ret = int(c_function(nvml, symbol)(*args))
    if ret != NVML_SUCCESS:
        raise nvml.NVMLError(ret)


def has_symbol(nvml: Any, symbol: str) -> bool | None:
    """Whether the loaded library exports `symbol`; None when this NVML module cannot say."""
    if getattr(nvml, "_nvmlGetFunctionPointer", None) is None:
        return None
    try:
        c_function(nvml, symbol)
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) == E.FUNCTION_NOT_FOUND:
            return False
        raise
    return True


def versioned_info(nvml: Any, call: Any, *args: Any) -> Any:
    """A profile-info call: v2 (`…V`, R510+, has the name), else the v1 struct the older driver has."""
    try:
        return call(*args)
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) != E.FUNCTION_NOT_FOUND:
            raise
    return call(*args, 1)


def compute_instance_info(nvml: Any, ci: Any) -> Any:
    """nvmlComputeInstanceGetInfo_v2 (R460+), else the v1 symbol, which fills the same leading fields."""
    try:
        return nvml.nvmlComputeInstanceGetInfo(ci)
    except nvml.NVMLError as exc:
        if E.nvml_code(exc) != E.FUNCTION_NOT_FOUND:
            raise
    info = nvml.c_nvmlComputeInstanceInfo_t()
    c_call(nvml, "nvmlComputeInstanceGetInfo", ci, ctypes.byref(info))
    return info


def running_processes(nvml: Any, handle: Any) -> list[Any]:
    """Compute processes (each with .pid): the v3 binding (R510+), else v2 (R455+), else the R450 v1 symbol."""
    try:
        return list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except _errors(nvml) as exc:
        if not missing_symbol(nvml, exc):
            raise
    v2 = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2", None)
    if v2 is not None:
        try:
            return list(v2(handle))
        except nvml.NVMLError as exc:
            if E.nvml_code(exc) != E.FUNCTION_NOT_FOUND:
                raise
    return _processes_v1(nvml, handle)


def _processes_v1(nvml: Any, handle: Any) -> list[Any]:
    fn = c_function(nvml, "nvmlDeviceGetComputeRunningProcesses")
    count = ctypes.c_uint(0)
    ret = int(fn(handle, ctypes.byref(count), None))
    if ret == NVML_SUCCESS:
        return []
    if ret != NVML_ERROR_INSUFFICIENT_SIZE:
        raise nvml.NVMLError(ret)
    count.value = count.value * 2 + 5  # room for processes that start meanwhile, as pynvml does
    array = (ProcessInfoV1 * count.value)()
    ret = int(fn(handle, ctypes.byref(count), array))
    if ret != NVML_SUCCESS:
        raise nvml.NVMLError(ret)
    return [array[i] for i in range(count.value)]


def graphics_processes(nvml: Any, handle: Any) -> list[Any]:
    """Graphics processes where the binding and driver have them; [] otherwise (they are a bonus)."""
    call = getattr(nvml, "nvmlDeviceGetGraphicsRunningProcesses", None)
    if call is None:
        return []
    try:
        return list(call(handle))
    except _errors(nvml):
        return []


Need = Literal["read", "change", "optional"]


@dataclass(frozen=True)
class NvmlCall:
    """One call the backend makes: its symbols newest first, the branch that brought the newest, and why."""

    symbols: tuple[str, ...]
    since: int
    purpose: str
    need: Need = "read"


# Every NVML call hami_mig/nvml makes, with the driver branch whose NVML headers first declare the newest
# symbol (NVIDIA/go-nvml gen/nvml/nvml.h history: 11.0 = R450, 11.1 = R455, 11.2 = R460, 11.4 = R470,
# 11.6 = R510, 12.4 = R550). Fallbacks are listed after the newest symbol.
BACKEND_CALLS: tuple[NvmlCall, ...] = (
    NvmlCall(("nvmlInitWithFlags",), 450, "start NVML"),
    NvmlCall(("nvmlSystemGetDriverVersion",), 450, "driver version"),
    NvmlCall(("nvmlDeviceGetCount_v2",), 450, "count GPUs"),
    NvmlCall(("nvmlDeviceGetHandleByIndex_v2",), 450, "open a GPU"),
    NvmlCall(("nvmlDeviceGetUUID",), 450, "GPU and MIG UUIDs"),
    NvmlCall(("nvmlDeviceGetName",), 450, "GPU model"),
    NvmlCall(("nvmlDeviceGetMemoryInfo",), 450, "memory size"),
    NvmlCall(("nvmlDeviceGetMigMode",), 450, "MIG mode"),
    NvmlCall(("nvmlDeviceGetGpuInstanceProfileInfoV", "nvmlDeviceGetGpuInstanceProfileInfo"), 510,
             "GPU-instance profiles (v1: names derived like go-nvlib)"),
    NvmlCall(("nvmlDeviceGetGpuInstancePossiblePlacements_v2", "nvmlDeviceGetGpuInstancePossiblePlacements"), 470,
             "profile placements"),
    NvmlCall(("nvmlDeviceGetGpuInstances",), 450, "list GPU instances"),
    NvmlCall(("nvmlGpuInstanceGetInfo",), 450, "GPU instance placement"),
    NvmlCall(("nvmlGpuInstanceGetComputeInstanceProfileInfoV", "nvmlGpuInstanceGetComputeInstanceProfileInfo"), 510,
             "compute-instance profiles"),
    NvmlCall(("nvmlGpuInstanceGetComputeInstances",), 450, "list compute instances"),
    NvmlCall(("nvmlComputeInstanceGetInfo_v2", "nvmlComputeInstanceGetInfo"), 460, "compute instance ids"),
    NvmlCall(("nvmlDeviceGetMaxMigDeviceCount",), 450, "walk MIG devices"),
    NvmlCall(("nvmlDeviceGetMigDeviceHandleByIndex",), 450, "walk MIG devices"),
    NvmlCall(("nvmlDeviceGetGpuInstanceId",), 450, "MIG device -> GPU instance"),
    NvmlCall(("nvmlDeviceGetComputeInstanceId",), 450, "MIG device -> compute instance"),
    NvmlCall(("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
              "nvmlDeviceGetComputeRunningProcesses"), 510, "processes on a GPU or MIG device"),
    NvmlCall(("nvmlDeviceCreateGpuInstanceWithPlacement",), 460, "create an instance at a placement", "change"),
    NvmlCall(("nvmlGpuInstanceCreateComputeInstance",), 450, "create its compute instance", "change"),
    NvmlCall(("nvmlComputeInstanceDestroy",), 450, "destroy a compute instance", "change"),
    NvmlCall(("nvmlGpuInstanceDestroy",), 450, "destroy a GPU instance", "change"),
    NvmlCall(("nvmlDeviceSetMigMode",), 450, "--manage-mig-mode", "change"),
    NvmlCall(("nvmlDeviceGetHandleByUUID",), 450, "CDI specs (MIG-<uuid> accepted from R470)", "change"),
    NvmlCall(("nvmlDeviceGetDeviceHandleFromMigDeviceHandle",), 450, "CDI specs", "change"),
    NvmlCall(("nvmlDeviceGetIndex",), 450, "CDI specs", "change"),
    NvmlCall(("nvmlDeviceGetMinorNumber",), 450, "CDI specs and IN_USE reports", "optional"),
    NvmlCall(("nvmlDeviceGetNumaNodeId",), 550, "NUMA node in the node annotation", "optional"),
    NvmlCall(("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2",
              "nvmlDeviceGetGraphicsRunningProcesses"), 510, "graphics processes in IN_USE reports", "optional"),
)
