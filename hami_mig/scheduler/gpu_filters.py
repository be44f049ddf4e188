"""HAMi's per-pod GPU filters: `nvidia.com/use-gputype` / `nouse-gputype` and `nvidia.com/use-gpuuuid` /
`nouse-gpuuuid`, applied as HAMi's scheduler applies them (`checkGPUtype` and `CheckUUID`, called from `Fit` in
pkg/device/nvidia/device.go and pkg/device/devices.go, v2.9.0)."""

from __future__ import annotations

from collections.abc import Mapping

USE_GPUTYPE = "nvidia.com/use-gputype"
NOUSE_GPUTYPE = "nvidia.com/nouse-gputype"
USE_GPUUUID = "nvidia.com/use-gpuuuid"
NOUSE_GPUUUID = "nvidia.com/nouse-gpuuuid"
KEYS = (USE_GPUTYPE, NOUSE_GPUTYPE, USE_GPUUUID, NOUSE_GPUUUID)


def gpu_allowed(annotations: Mapping[str, str], uuid: str, type_name: str) -> bool:
    """Whether the pod's annotations let it use this GPU (its register `type` and UUID).

    Types: each comma-separated value is matched as a case-insensitive substring of the type (`A100` takes
    every A100); UUIDs: exact, `use-gpuuuid` winning over `nouse-gpuuuid` when both are set.
    """
    card = type_name.upper()
    if USE_GPUTYPE in annotations and not any(t.upper() in card for t in annotations[USE_GPUTYPE].split(",")):
        return False
    if NOUSE_GPUTYPE in annotations and any(t.upper() in card for t in annotations[NOUSE_GPUTYPE].split(",")):
        return False
    if USE_GPUUUID in annotations:
        return uuid in annotations[USE_GPUUUID].split(",")
    if NOUSE_GPUUUID in annotations:
        return uuid not in annotations[NOUSE_GPUUUID].split(",")
    return True


def gpu_filter(annotations: Mapping[str, str]) -> dict[str, str]:
    """The pod's filter annotations only (empty: every GPU is allowed)."""
    return {k: annotations[k] for k in KEYS if k in annotations}
