"""The hardware adapter: the only code that talks to the NVIDIA driver (pynvml, or the simulator in tests)."""

from hami_mig.nvml.apply import ApplyResult, StepResult
from hami_mig.nvml.backend import NvmlBackend
from hami_mig.nvml.device import GpuDevice, HwComputeInstance, HwInstance
from hami_mig.nvml.dryrun import PredictedStep, predict
from hami_mig.nvml.errors import (
    ApplyError,
    HardwareError,
    InstanceBusyError,
    MigDisabledError,
    NvmlUnavailableError,
    describe_nvml,
    nvml_error_name,
    nvml_error_text,
)
from hami_mig.nvml.instances import InstanceRecord

__all__ = [
    "ApplyError",
    "ApplyResult",
    "GpuDevice",
    "HardwareError",
    "HwComputeInstance",
    "HwInstance",
    "InstanceBusyError",
    "InstanceRecord",
    "MigDisabledError",
    "NvmlBackend",
    "NvmlUnavailableError",
    "PredictedStep",
    "StepResult",
    "describe_nvml",
    "nvml_error_name",
    "nvml_error_text",
    "predict",
]
