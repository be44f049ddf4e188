"""NVML error names and the hardware-layer exceptions, so every failure names the driver's own code."""

from __future__ import annotations

from typing import Any

from hami_mig.errors import HamiMigError

# Code -> (NVML_ERROR_* name, the driver's nvmlErrorString text). pynvml has no text for several of
# these without the library loaded (str() gives "NVML Error with code 19"), so we keep our own.
_ERRORS: dict[int, tuple[str, str]] = {
    1: ("NVML_ERROR_UNINITIALIZED", "Uninitialized"),
    2: ("NVML_ERROR_INVALID_ARGUMENT", "Invalid Argument"),
    3: ("NVML_ERROR_NOT_SUPPORTED", "Not Supported"),
    4: ("NVML_ERROR_NO_PERMISSION", "Insufficient Permissions"),
    5: ("NVML_ERROR_ALREADY_INITIALIZED", "Already Initialized"),
    6: ("NVML_ERROR_NOT_FOUND", "Not Found"),
    7: ("NVML_ERROR_INSUFFICIENT_SIZE", "Insufficient Size"),
    8: ("NVML_ERROR_INSUFFICIENT_POWER", "Insufficient External Power"),
    9: ("NVML_ERROR_DRIVER_NOT_LOADED", "Driver Not Loaded"),
    10: ("NVML_ERROR_TIMEOUT", "Timeout"),
    11: ("NVML_ERROR_IRQ_ISSUE", "Interrupt Request Issue"),
    12: ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"),
    13: ("NVML_ERROR_FUNCTION_NOT_FOUND", "Function Not Found"),
    14: ("NVML_ERROR_CORRUPTED_INFOROM", "Corrupted infoROM"),
    15: ("NVML_ERROR_GPU_IS_LOST", "GPU is lost"),
    16: ("NVML_ERROR_RESET_REQUIRED", "GPU requires restart"),
    17: ("NVML_ERROR_OPERATING_SYSTEM", "The operating system has blocked the request"),
    18: ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", "RM has detected an NVML/RM version mismatch"),
    19: ("NVML_ERROR_IN_USE", "In use by another client"),
    20: ("NVML_ERROR_MEMORY", "Insufficient Memory"),
    21: ("NVML_ERROR_NO_DATA", "No data"),
    22: ("NVML_ERROR_VGPU_ECC_NOT_SUPPORTED", "The requested vgpu operation is not available on target device"),
    23: ("NVML_ERROR_INSUFFICIENT_RESOURCES", "Insufficient Resources"),
    24: ("NVML_ERROR_FREQ_NOT_SUPPORTED", "Frequency not supported"),
    25: ("NVML_ERROR_ARGUMENT_VERSION_MISMATCH", "Argument version mismatch"),
    26: ("NVML_ERROR_DEPRECATED", "Deprecated"),
    27: ("NVML_ERROR_NOT_READY", "Not ready"),
    28: ("NVML_ERROR_GPU_NOT_FOUND", "GPU not found"),
    29: ("NVML_ERROR_INVALID_STATE", "Invalid state"),
    30: ("NVML_ERROR_RESET_TYPE_NOT_SUPPORTED", "Reset type not supported"),
    999: ("NVML_ERROR_UNKNOWN", "Unknown Error"),
}

UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
INSUFFICIENT_SIZE = 7
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
IN_USE = 19
INSUFFICIENT_RESOURCES = 23


def nvml_error_name(code: int) -> str:
    """`19` -> `NVML_ERROR_IN_USE` (unknown codes keep their number)."""
    entry = _ERRORS.get(code)
    return entry[0] if entry else f"NVML_ERROR_{code}"


def nvml_error_text(code: int) -> str:
    """The driver's human text for a code, without needing the NVML library loaded."""
    entry = _ERRORS.get(code)
    return entry[1] if entry else f"NVML error code {code}"


def nvml_code(exc: BaseException) -> int | None:
    """The NVML return code of a pynvml.NVMLError (or look-alike), else None."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe_nvml(exc: BaseException) -> str:
    """`NVML_ERROR_INSUFFICIENT_RESOURCES (Insufficient Resources)`; never calls into the library."""
    code = nvml_code(exc)
    if code is None:
        return f"{type(exc).__name__}: {exc}"
    return f"{nvml_error_name(code)} ({nvml_error_text(code)})"


def is_nvml_error(exc: BaseException, nvml: Any) -> bool:
    """True for the injected module's NVMLError (real pynvml or the simulator's, which is the same class)."""
    base = getattr(nvml, "NVMLError", None)
    return isinstance(base, type) and isinstance(exc, base)


class HardwareError(HamiMigError):
    """A driver call failed; carries the NVML code so callers can decide (lost GPU, busy, no room)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def code_name(self) -> str | None:
        return None if self.code is None else nvml_error_name(self.code)


class NvmlUnavailableError(HardwareError):
    """NVML could not be initialised: no driver, no library, or no permission on this machine."""


class MigDisabledError(HardwareError):
    """The GPU is not in MIG mode; the agent changes MIG mode only with --manage-mig-mode, on an idle GPU."""


class InstanceBusyError(HardwareError):
    """A destroy was refused because the instance has processes, unknown processes, or a pod holds it."""


class ApplyError(HardwareError):
    """A plan step failed; says which step, on which GPU, the NVML error, and what rollback did."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        *,
        failed_step: int = -1,
        rolled_back: tuple[str, ...] = (),
        rollback_failures: tuple[str, ...] = (),
        not_restored: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, code)
        self.failed_step = failed_step
        self.rolled_back = rolled_back
        self.rollback_failures = rollback_failures
        self.not_restored = not_restored
