"""HAMi's own readers of its annotations, ported line by line from its Go source (file, function and tag cited
at each), so tests check hami-mig's output against what HAMi's scheduler and device plugin really decode.

These ports deliberately keep Go's quirks (errors ignored by `strconv`, empty entries kept or skipped): they
are the yardstick, not hami-mig code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


class GoDecodeError(Exception):
    """The Go function returned an error."""


@dataclass
class DeviceInfo:
    """`DeviceInfo` in pkg/device/devices.go (v2.7.1 and v2.9.0), the fields the register carries."""

    ID: str = ""
    Index: int = 0
    Count: int = 0
    Devmem: int = 0
    Devcore: int = 0
    Type: str = ""
    Numa: int = 0
    Mode: str = ""
    Health: bool = False
    DevicePairScore: dict[str, Any] = field(default_factory=dict)


def _atoi(text: str) -> int:
    """strconv.Atoi / ParseInt with the error ignored, as the Go code does (`x, _ := ...`)."""
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else 0


def _parse_bool(text: str) -> bool:
    """strconv.ParseBool with the error ignored."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def decode_node_devices_v271(text: str) -> list[DeviceInfo]:
    """pkg/device/devices.go `DecodeNodeDevices` at v2.7.1 (what v2.5-v2.7 schedulers use in GetNodeDevices)."""
    if ":" not in text:
        raise GoDecodeError("node annotations not decode successfully")
    out: list[DeviceInfo] = []
    for val in text.split(":"):
        if "," not in val:
            continue
        items = val.split(",")
        if len(items) not in (7, 9):
            raise GoDecodeError("node annotations not decode successfully")
        mode, index = "hami-core", 0
        if len(items) == 9:
            index, mode = _atoi(items[7]), items[8]
        out.append(DeviceInfo(ID=items[0], Count=_atoi(items[1]), Devmem=_atoi(items[2]), Devcore=_atoi(items[3]),
                              Type=items[4], Numa=_atoi(items[5]), Health=_parse_bool(items[6]), Mode=mode,
                              Index=index))
    return out


_GO_FIELDS = {"id": "ID", "index": "Index", "count": "Count", "devmem": "Devmem", "devcore": "Devcore",
              "type": "Type", "numa": "Numa", "mode": "Mode", "health": "Health",
              "devicepairscore": "DevicePairScore"}


def unmarshal_node_devices_v29(text: str) -> list[DeviceInfo]:
    """pkg/device/devices.go `UnMarshalNodeDevices` at v2.9.0: json.Unmarshal into []*DeviceInfo (keys matched
    without regard to case, as encoding/json does)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GoDecodeError(str(exc)) from None
    if not isinstance(data, list):
        raise GoDecodeError("json: cannot unmarshal into []*DeviceInfo")
    out = []
    for entry in data:
        info = DeviceInfo()
        for key, value in entry.items():
            attr = _GO_FIELDS.get(key.lower())
            if attr is not None:
                setattr(info, attr, value)
        out.append(info)
    return out


@dataclass
class ContainerDevice:
    """`ContainerDevice` in pkg/device/devices.go: what the pod devices string carries."""

    UUID: str
    Type: str
    Usedmem: int
    Usedcores: int


def decode_container_devices(text: str) -> list[ContainerDevice]:
    """pkg/device/devices.go `DecodeContainerDevices` (same at v2.5.0 in pkg/util and v2.9.0)."""
    if not text:
        return []
    out = []
    for val in text.split(":"):
        if "," in val:
            parts = val.split(",")
            if len(parts) < 4:
                raise GoDecodeError("pod annotation format error; information missing, please do not use nodeName "
                                    "field in task")
            out.append(ContainerDevice(parts[0], parts[1], _atoi(parts[2]), _atoi(parts[3])))
    return out


def decode_pod_devices(text: str, *, keep_empty: bool = True) -> list[list[ContainerDevice]]:
    """pkg/device/devices.go `DecodePodDevices` for one device type: v2.9.0 keeps empty entries (the `;`-split
    index is the container index); v2.5.0-v2.8.x skip them (`if len(cd) == 0 { continue }`)."""
    out = []
    for part in text.split(";"):
        entry = decode_container_devices(part)
        if entry or keep_empty:
            out.append(entry)
    return out


def encode_pod_single_device(devices: list[list[ContainerDevice]]) -> str:
    """pkg/device/devices.go `EncodePodSingleDevice` / `EncodeContainerDevices` (v2.9.0)."""
    return "".join("".join(f"{d.UUID},{d.Type},{d.Usedmem},{d.Usedcores}:" for d in ctr) + ";" for ctr in devices)


def erase_next_device_type_v29(text: str) -> str:
    """pkg/device-plugin/nvidiadevice/nvinternal/plugin/util.go `eraseNextDeviceTypeFromAnnotation` at v2.9.0:
    decode, empty the first entry with devices, encode."""
    pd = decode_pod_devices(text)
    res: list[list[ContainerDevice]] = []
    found = False
    for val in pd:
        if found:
            res.append(val)
        elif val:
            found = True
            res.append([])
        else:
            res.append(val)
    return encode_pod_single_device(res)


def get_next_device_request_v29(text: str) -> int:
    """plugin/util.go `GetNextDeviceRequest` at v2.9.0: the index of the first entry with devices."""
    for index, entry in enumerate(decode_pod_devices(text)):
        if entry:
            return index
    raise GoDecodeError("device request not found")


def allocation_try_success_v29(to_allocate: str) -> bool:
    """plugin/util.go `podAllocationTrySuccess` at v2.9.0: success (lock released) once the refreshed
    to-allocate annotation names no NVIDIA device (`strings.Contains(annos, "NVIDIA")`)."""
    return "NVIDIA" not in to_allocate


def marshal_node_devices_v29(devices: list[DeviceInfo]) -> str:
    """pkg/device/devices.go `MarshalNodeDevices` at v2.9.0: json.Marshal of []*DeviceInfo, fields in struct order,
    `omitempty` zero values left out, DevicePairScore (a struct, never omitted) as {}."""
    out = []
    for d in devices:
        fields = [("id", d.ID), ("index", d.Index), ("count", d.Count), ("devmem", d.Devmem), ("devcore", d.Devcore),
                  ("type", d.Type), ("numa", d.Numa), ("mode", d.Mode), ("health", d.Health)]
        obj: dict[str, Any] = {k: v for k, v in fields if v not in ("", 0, False)}
        obj["devicepairscore"] = {}
        out.append(obj)
    return json.dumps(out, separators=(",", ":"))


def register_type_v29(nvml_name: str) -> str:
    """plugin/register.go `getAPIDevices` at v2.9.0: `NVIDIA-` prepended when the name lacks the NVIDIA prefix."""
    return nvml_name if nvml_name.startswith("NVIDIA") else f"NVIDIA-{nvml_name}"
