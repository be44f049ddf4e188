"""NVML itself: does it load, which driver and CUDA versions, does the library have every call hami-mig makes."""

from __future__ import annotations

from typing import Any

from hami_mig.doctor.readonly import ReadOnlyNvml
from hami_mig.doctor.report import Check, fail, ok, warn
from hami_mig.nvml import NvmlBackend, NvmlUnavailableError
from hami_mig.nvml import errors as E
from hami_mig.nvml.compat import BACKEND_CALLS, OLDEST_READABLE_BRANCH, OLDEST_SUPPORTED_BRANCH, has_symbol
from hami_mig.nvml.profiles import decode

SUBJECT = "NVML"
UPGRADE = (f"install an NVIDIA data-center driver of branch R{OLDEST_SUPPORTED_BRANCH} or newer "
           "(R535, R550, R570 or R580 are current), then reboot the node")

# What to do when nvmlInit fails, by NVML error code.
_INIT_FIX = {
    E.LIBRARY_NOT_FOUND: "install the NVIDIA driver on the host; inside a container run with the NVIDIA runtime "
                         "(RuntimeClass nvidia) so libnvidia-ml.so.1 is mounted",
    E.DRIVER_NOT_LOADED: "load the kernel module (`sudo modprobe nvidia`) or reinstall the driver until `nvidia-smi` "
                         "works",
    E.NO_PERMISSION: "run as root (or with read-write access to /dev/nvidiactl and /dev/nvidia*)",
    18: "the user-space library and the kernel module are different versions: reboot after the driver upgrade",
}
_INIT_FIX_DEFAULT = "make `nvidia-smi` work on this node first (driver installed, kernel module loaded, /dev/nvidia*)"


def open_nvml(module: Any) -> tuple[NvmlBackend | None, ReadOnlyNvml | None, list[Check]]:
    """`module` (pynvml or the simulator) behind the read-only guard, initialised; on failure (None, None, why)."""
    guard = ReadOnlyNvml(module)
    backend = NvmlBackend(guard)
    try:
        backend.init()
    except NvmlUnavailableError as exc:
        message = str(exc).split("; is the NVIDIA driver", 1)[0]
        return None, None, [fail("nvml.load", SUBJECT, message, _INIT_FIX.get(exc.code or 0, _INIT_FIX_DEFAULT))]
    return backend, guard, [ok("nvml.load", SUBJECT, "libnvidia-ml loaded and initialised")]


def _branch(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def version_checks(nvml: Any) -> tuple[list[Check], dict[str, Any]]:
    """The driver branch against the oldest hami-mig supports; CUDA and NVML versions for the record."""
    facts: dict[str, Any] = {}
    try:
        driver = decode(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError as exc:
        return [fail("nvml.driver", SUBJECT, f"the driver version cannot be read: {E.describe_nvml(exc)}",
                     _INIT_FIX_DEFAULT)], facts
    facts["driver_version"] = driver
    cuda = _cuda_version(nvml)
    facts["cuda_version"] = cuda
    nvml_version = _optional_text(nvml, "nvmlSystemGetNVMLVersion")
    facts["nvml_version"] = nvml_version
    branch = _branch(driver)
    shown = f"driver {driver}" + (f" (R{branch})" if branch else "") + (f", CUDA {cuda}" if cuda else "") + (
        f", NVML {nvml_version}" if nvml_version else "")
    checks: list[Check] = []
    if branch is None:
        checks.append(warn("nvml.driver", SUBJECT, f"{shown}: the branch cannot be told from this version string",
                           f"check that `nvidia-smi` reports R{OLDEST_SUPPORTED_BRANCH} or newer"))
    elif branch < OLDEST_READABLE_BRANCH:
        checks.append(fail("nvml.driver", SUBJECT, f"{shown} predates MIG (R{OLDEST_READABLE_BRANCH})", UPGRADE))
    elif branch < OLDEST_SUPPORTED_BRANCH:
        checks.append(fail("nvml.driver", SUBJECT,
                           f"{shown} is older than R{OLDEST_SUPPORTED_BRANCH}, the oldest hami-mig supports (MIG "
                           "device UUIDs take their MIG-<uuid> form, and hami-mig reads this driver only through "
                           "older calls)", UPGRADE))
    else:
        checks.append(ok("nvml.driver", SUBJECT, shown))
    return checks, facts


def _cuda_version(nvml: Any) -> str | None:
    try:
        value = int(nvml.nvmlSystemGetCudaDriverVersion())
    except (nvml.NVMLError, AttributeError):
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def _optional_text(nvml: Any, name: str) -> str | None:
    try:
        return decode(getattr(nvml, name)())
    except (nvml.NVMLError, AttributeError):
        return None


def symbol_checks(nvml: Any) -> list[Check]:
    """Every call hami_mig/nvml makes, looked up in the loaded library (looking a symbol up runs nothing)."""
    older: list[str] = []
    lacking: list[tuple[str, str]] = []  # (symbol and branch, need)
    for call in BACKEND_CALLS:
        found = [has_symbol(nvml, s) for s in call.symbols]
        if None in found:
            return [ok("nvml.calls", SUBJECT, "this NVML binding cannot list the library's symbols; each call is "
                                              "checked when it is made")]
        if found[0]:
            continue
        if any(found):
            used = call.symbols[found.index(True)]
            older.append(f"{used} for {call.symbols[0]} (R{call.since}+)")
        elif call.need != "optional":
            lacking.append((f"{call.symbols[0]} (R{call.since}+, {call.purpose})", call.need))
    checks: list[Check] = []
    if lacking:
        what = "read the GPUs" if any(need == "read" for _, need in lacking) else "create or destroy instances"
        checks.append(fail("nvml.calls", SUBJECT,
                           f"the NVML library lacks calls hami-mig needs to {what}: "
                           + ", ".join(s for s, _ in lacking), UPGRADE))
    elif older:
        checks.append(warn("nvml.calls", SUBJECT,
                           f"this driver lacks the newest version of {len(older)} call(s); hami-mig uses the older "
                           "ones: " + "; ".join(older),
                           "nothing is required; a driver of R510 or newer reports profile names itself instead of "
                           "hami-mig deriving them"))
    else:
        checks.append(ok("nvml.calls", SUBJECT,
                         f"the library has every call hami-mig makes ({len(BACKEND_CALLS)} calls)"))
    return checks
