"""Which C entry points a simulated driver branch exports, so the simulator can play an older libnvidia-ml.

pynvml binds the newest version of several calls (`…ProfileInfoV`, `…PossiblePlacements_v2`,
`…ComputeInstanceGetInfo_v2`, `…RunningProcesses_v3`); on a driver whose library lacks that symbol
the binding raises NVMLError_FunctionNotFound (`_nvmlGetFunctionPointer`), and the unversioned
process getters raise `NVMLLibraryMismatchError` instead (`throwOnVersionMismatch`).
"""

from __future__ import annotations

import pynvml

from hami_mig.errors import InputError

DEFAULT_DRIVER = "580.65.06"
OLDEST_MIG_BRANCH = 450  # R450 (NVML 11.0) brought MIG: mode, GI/CI profiles, instances, MIG device handles

# First branch exporting each versioned symbol, from the NVML headers in NVIDIA/go-nvml's history of
# gen/nvml/nvml.h (NVML 11.1 = R455, 11.2 = R460, 11.4 = R470, 11.6 = R510, 12.4 = R550, 13.0 = R580).
# A symbol not listed here is as old as MIG (R450) or older.
SINCE: dict[str, int] = {
    "nvmlDeviceGetComputeRunningProcesses_v2": 455,
    "nvmlDeviceGetGraphicsRunningProcesses_v2": 455,
    "nvmlComputeInstanceGetInfo_v2": 460,
    "nvmlDeviceCreateGpuInstanceWithPlacement": 460,
    "nvmlDeviceGetGpuInstancePossiblePlacements_v2": 470,
    "nvmlDeviceGetGpuInstanceProfileInfoV": 510,
    "nvmlGpuInstanceGetComputeInstanceProfileInfoV": 510,
    "nvmlDeviceGetComputeRunningProcesses_v3": 510,
    "nvmlDeviceGetGraphicsRunningProcesses_v3": 510,
    "nvmlDeviceGetNumaNodeId": 550,
    "nvmlDeviceGetGpuInstanceProfileInfoByIdV": 580,
}

# pynvml function -> the C symbol it looks up, where the two differ (nvidia-ml-py 13.x).
BINDING_SYMBOL: dict[str, str] = {
    "nvmlInit": "nvmlInitWithFlags",
    "nvmlDeviceGetCount": "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex": "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetGpuInstancePossiblePlacements": "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
    "nvmlComputeInstanceGetInfo": "nvmlComputeInstanceGetInfo_v2",
    "nvmlDeviceGetComputeRunningProcesses": "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses": "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetGpuInstanceProfileInfoById": "nvmlDeviceGetGpuInstanceProfileInfoByIdV",
}
# pynvml wraps these in throwOnVersionMismatch: a missing symbol is NVMLLibraryMismatchError, not an NVMLError.
MISMATCH_WRAPPED = frozenset({"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"})

# CUDA driver API version per branch (nvmlSystemGetCudaDriverVersion), for the branches the tests use.
_CUDA = ((580, 13000), (575, 12090), (570, 12080), (560, 12060), (550, 12040), (535, 12020), (525, 12000),
         (520, 11080), (515, 11070), (510, 11060), (495, 11050), (470, 11040), (460, 11020), (455, 11010),
         (450, 11000))


def branch_of(version: str) -> int:
    """`470.256.02` -> 470."""
    head = version.split(".", 1)[0]
    if not head.isdigit():
        raise InputError("driver version", version, "a driver version like 580.65.06")
    return int(head)


def cuda_version(branch: int) -> int:
    return next((cuda for b, cuda in _CUDA if branch >= b), 11000)


def exported(symbol: str, branch: int) -> bool:
    return branch >= SINCE.get(symbol, OLDEST_MIG_BRANCH)


def require(binding: str, branch: int, symbol: str | None = None) -> None:
    """Raise what pynvml raises when the library of this branch lacks the symbol behind `binding`."""
    wanted = symbol or BINDING_SYMBOL.get(binding, binding)
    if exported(wanted, branch):
        return
    if binding in MISMATCH_WRAPPED and symbol is None:
        raise pynvml.NVMLLibraryMismatchError(
            "Unversioned function called and the pyNVML version does not match the NVML lib version. Either use "
            f"matching pyNVML and NVML lib versions or use a versioned function such as {binding}_v2")
    raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
