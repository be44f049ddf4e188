"""The two driver facts the operability features need beyond discovery: MIG mode changes, and device nodes.

Changing MIG mode is the only GPU-wide change hami-mig makes, and only when asked (`--manage-mig-mode`)
on an idle GPU. The driver may accept the request and still report a non-success activation status:
on Ampere the new mode is then *pending* until a GPU reset or reboot, which hami-mig never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hami_mig.nvml import errors as E
from hami_mig.nvml.holders import gpu_minor
from hami_mig.nvml.profiles import decode

MIG_DISABLE = 0
MIG_ENABLE = 1
NVML_SUCCESS = 0


@dataclass(frozen=True)
class MigModeChange:
    """What nvmlDeviceSetMigMode did: the activation status and the (current, pending) mode read back."""

    index: int
    uuid: str
    enable: bool
    activation_status: int
    current: int
    pending: int

    @property
    def active(self) -> bool:
        """The requested mode is in effect now (Hopper and later, or an idle Ampere the driver could reset)."""
        return self.current == (MIG_ENABLE if self.enable else MIG_DISABLE)

    @property
    def is_pending(self) -> bool:
        return not self.active and self.pending == (MIG_ENABLE if self.enable else MIG_DISABLE)

    def describe(self) -> str:
        verb = "enable" if self.enable else "disable"
        if self.active:
            return f"MIG mode {verb}d on GPU {self.index} ({self.uuid})"
        status = ("" if self.activation_status == NVML_SUCCESS
                  else f" (activation status {E.nvml_error_name(self.activation_status)})")
        return (f"MIG mode {verb} on GPU {self.index} ({self.uuid}) is pending{status}: a GPU reset "
                f"(`nvidia-smi -i {self.index} -r` on an idle GPU) or a node reboot is required; "
                "hami-mig never resets a GPU")


def set_mig_mode(nvml: Any, handle: Any, index: int, enable: bool) -> MigModeChange:
    """nvmlDeviceSetMigMode, then read the mode back; NVML errors become HardwareError with the code."""
    uuid = decode(nvml.nvmlDeviceGetUUID(handle))
    try:
        status = int(nvml.nvmlDeviceSetMigMode(handle, MIG_ENABLE if enable else MIG_DISABLE))
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError as exc:
        hint = " (hami-mig needs CAP_SYS_ADMIN to change MIG mode)" if E.nvml_code(exc) == E.NO_PERMISSION else ""
        raise E.HardwareError(f"GPU {index}: nvmlDeviceSetMigMode({int(enable)}) failed: "
                              f"{E.describe_nvml(exc)}{hint}", E.nvml_code(exc)) from None
    return MigModeChange(index, uuid, enable, status, int(current), int(pending))


@dataclass(frozen=True)
class MigDeviceNodes:
    """What a container needs to reach one MIG device: its parent GPU's minor and its GI/CI ids."""

    mig_uuid: str
    gpu_index: int
    gpu_uuid: str
    gpu_minor: int | None  # None: the driver did not say; the GPU index stands in for it
    gi_id: int
    ci_id: int


def mig_device_nodes(nvml: Any, mig_uuid: str) -> MigDeviceNodes:
    """Look a MIG device up by UUID (R470+ UUIDs are accepted by nvmlDeviceGetHandleByUUID)."""
    try:
        mig = nvml.nvmlDeviceGetHandleByUUID(mig_uuid)
        gi_id = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
        ci_id = int(nvml.nvmlDeviceGetComputeInstanceId(mig))
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        index = int(nvml.nvmlDeviceGetIndex(parent))
        uuid = decode(nvml.nvmlDeviceGetUUID(parent))
    except nvml.NVMLError as exc:
        raise E.HardwareError(f"MIG device {mig_uuid}: {E.describe_nvml(exc)}", E.nvml_code(exc)) from None
    return MigDeviceNodes(mig_uuid, index, uuid, gpu_minor(nvml, parent), gi_id, ci_id)
