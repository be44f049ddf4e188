"""`hami.io/node-nvidia-register`: the GPUs a node offers, in either format HAMi's schedulers decode.

`json` is what HAMi v2.8+ writes and reads (`MarshalNodeDevices` / `UnMarshalNodeDevices` in
`pkg/device/devices.go`); `legacy` is the comma-separated format of v2.5-v2.7 (`EncodeNodeDevices` /
`DecodeNodeDevices` at v2.7.1), which those schedulers need: they cannot decode the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODE_HAMI_CORE, MODES, NODE_REGISTER

RegisterFormat = Literal["json", "legacy"]
REGISTER_FORMATS: tuple[RegisterFormat, ...] = ("json", "legacy")
TYPE_PREFIX = "NVIDIA-"
_INT32_MAX = 2**31 - 1


def register_type(nvml_name: str, fmt: RegisterFormat = "json") -> str:
    """The register's `type` for a GPU's NVML name, as that HAMi generation's device plugin writes it.

    v2.8+ (`getAPIDevices` in register.go): the NVML name, `NVIDIA-` prepended only when it does not
    start with `NVIDIA`. v2.5-v2.7: always `NVIDIA-<name>` ("NVIDIA-NVIDIA A100-SXM4-40GB").
    """
    if fmt == "legacy" or not nvml_name.startswith("NVIDIA"):
        return TYPE_PREFIX + nvml_name
    return nvml_name


@dataclass(frozen=True, kw_only=True)
class NodeDevice:
    """One GPU in the register annotation; `type` is stored as written (see register_type)."""

    id: str
    index: int
    count: int
    devmem: int
    devcore: int = 100
    type: str
    numa: int = 0
    mode: str = MODE_HAMI_CORE
    health: bool = True

    def __post_init__(self) -> None:
        where = f"{NODE_REGISTER} device {self.id!r}"
        if not isinstance(self.id, str) or not self.id.strip():
            raise InputError(f"{NODE_REGISTER} id", self.id, "a non-empty GPU UUID")
        for name in ("index", "count", "devmem", "devcore"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
                raise InputError(f"{where} {name}", value, f"a whole number from 0 to {_INT32_MAX}")
        if isinstance(self.numa, bool) or not isinstance(self.numa, int) or not -1 <= self.numa <= _INT32_MAX:
            raise InputError(f"{where} numa", self.numa, "a NUMA node number (-1 for unknown)")
        if not isinstance(self.type, str) or not self.type.strip():
            raise InputError(f"{where} type", self.type, "the GPU's NVML name, e.g. 'NVIDIA A100-SXM4-40GB'")
        if self.mode not in MODES:
            raise InputError(f"{where} mode", self.mode, f"one of {', '.join(MODES)}")
        if not isinstance(self.health, bool):
            raise InputError(f"{where} health", self.health, "true or false")

    def to_json(self) -> dict[str, Any]:
        """Go's field order of `DeviceInfo`, zero values left out (`omitempty`); `devicepairscore` is a
        struct, which `omitempty` never omits, so it is always there as `{}`."""
        fields: list[tuple[str, Any]] = [
            ("id", self.id), ("index", self.index), ("count", self.count), ("devmem", self.devmem),
            ("devcore", self.devcore), ("type", self.type), ("numa", self.numa), ("mode", self.mode),
            ("health", self.health),
        ]
        out = {key: value for key, value in fields if value not in ("", 0, False)}
        out["devicepairscore"] = {}
        return out

    def to_legacy(self) -> str:
        """`id,count,devmem,devcore,type,numa,health,index,mode` (EncodeNodeDevices at v2.7.1)."""
        for name in ("id", "type", "mode"):
            if any(c in getattr(self, name) for c in ",:"):
                raise InputError(f"{NODE_REGISTER} {name}", getattr(self, name),
                                 "no ',' or ':' in the legacy register format")
        health = "true" if self.health else "false"
        return (f"{self.id},{self.count},{self.devmem},{self.devcore},{self.type},{self.numa},{health},"
                f"{self.index},{self.mode}")


def _go_json(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it: HTML characters and U+2028/2029 escaped, other
    non-ASCII kept as UTF-8."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def encode_node_register(devices: Iterable[NodeDevice], fmt: RegisterFormat = "json") -> str:
    """The annotation value byte for byte as HAMi writes it: `MarshalNodeDevices` (v2.8+) or, for
    `legacy`, `EncodeNodeDevices` (v2.5-v2.7: each GPU's record followed by `:`)."""
    if fmt == "legacy":
        return "".join(device.to_legacy() + ":" for device in devices)
    return _go_json([device.to_json() for device in devices])


_DEFAULTS: dict[str, Any] = {"index": 0, "count": 0, "devmem": 0, "devcore": 0, "numa": 0, "health": False}


def decode_node_register(text: str) -> tuple[NodeDevice, ...]:
    """Either format: a JSON array (missing keys take Go's zero values, extra keys are ignored) or the
    legacy records (7 or 9 fields each, as DecodeNodeDevices at v2.7.1 reads them)."""
    if not text.lstrip().startswith("["):
        return _decode_legacy(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(NODE_REGISTER, _clip(text), "a JSON array of GPU objects") from None
    if not isinstance(data, list):
        raise InputError(NODE_REGISTER, _clip(text), "a JSON array of GPU objects")
    devices = []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InputError(f"{NODE_REGISTER}[{position}]", entry, "a JSON object with id, index, count, devmem ...")
        fields = {**_DEFAULTS, **{key: entry[key] for key in _KEYS if key in entry}}
        if "id" not in fields:
            raise InputError(f"{NODE_REGISTER}[{position}]", entry, "every GPU needs an 'id' (its UUID)")
        fields.setdefault("type", "")
        mode = fields.get("mode") or MODE_HAMI_CORE  # HAMi omits an empty mode: a hami-core device
        fields["mode"] = mode
        try:
            devices.append(NodeDevice(**fields))
        except InputError as exc:
            raise InputError(f"{NODE_REGISTER}[{position}] {exc.field}", exc.value, exc.allowed) from None
    return tuple(devices)


_KEYS = ("id", "index", "count", "devmem", "devcore", "type", "numa", "mode", "health")
_LEGACY = "id,count,devmem,devcore,type,numa,health[,index,mode] records, each followed by ':'"


def _decode_legacy(text: str) -> tuple[NodeDevice, ...]:
    if ":" not in text:
        raise InputError(NODE_REGISTER, _clip(text), f"a JSON array of GPU objects, or {_LEGACY}")
    devices = []
    for record in text.split(":"):
        if "," not in record:
            continue  # DecodeNodeDevices skips what has no comma (the empty tail after the last ':')
        items = record.split(",")
        if len(items) not in (7, 9):
            raise InputError(NODE_REGISTER, _clip(record), _LEGACY)
        where = f"{NODE_REGISTER} record {items[0]!r}"
        numbers = {}
        for name, raw in (("count", items[1]), ("devmem", items[2]), ("devcore", items[3]), ("numa", items[5]),
                          *((("index", items[7]),) if len(items) == 9 else ())):
            try:
                numbers[name] = int(raw)
            except ValueError:
                raise InputError(f"{where} {name}", raw, "a whole number") from None
        if items[6] not in ("true", "false", "True", "False", "TRUE", "FALSE", "1", "0", "t", "f", "T", "F"):
            raise InputError(f"{where} health", items[6], "true or false")
        try:
            devices.append(NodeDevice(
                id=items[0], type=items[4], health=items[6] in ("true", "True", "TRUE", "1", "t", "T"),
                mode=items[8] if len(items) == 9 else MODE_HAMI_CORE, index=numbers.get("index", 0),
                count=numbers["count"], devmem=numbers["devmem"], devcore=numbers["devcore"], numa=numbers["numa"]))
        except InputError as exc:
            raise InputError(f"{NODE_REGISTER} {exc.field}", exc.value, exc.allowed) from None
    return tuple(devices)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
