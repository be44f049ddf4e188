"""`hami.io/node-nvidia-register`: the GPUs a node offers, as the JSON array HAMi's scheduler decodes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODE_HAMI_CORE, MODES, NODE_REGISTER

TYPE_PREFIX = "NVIDIA-"
_INT32_MAX = 2**31 - 1


def register_type(nvml_name: str) -> str:
    """HAMi registers `NVIDIA-<NVML name>` ("NVIDIA-NVIDIA A100-SXM4-40GB"); idempotent."""
    return nvml_name if nvml_name.startswith(TYPE_PREFIX) else TYPE_PREFIX + nvml_name


@dataclass(frozen=True, kw_only=True)
class NodeDevice:
    """One GPU in the register annotation; `type` is stored with its `NVIDIA-` prefix."""

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
        object.__setattr__(self, "type", register_type(self.type))
        if self.mode not in MODES:
            raise InputError(f"{where} mode", self.mode, f"one of {', '.join(MODES)}")
        if not isinstance(self.health, bool):
            raise InputError(f"{where} health", self.health, "true or false")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "count": self.count,
            "devmem": self.devmem,
            "devcore": self.devcore,
            "type": self.type,
            "numa": self.numa,
            "mode": self.mode,
            "health": self.health,
        }


def encode_node_register(devices: Iterable[NodeDevice]) -> str:
    """Compact JSON; every key written, even zeros (HAMi's Go decoder reads either)."""
    return json.dumps([device.to_json() for device in devices], separators=(",", ":"))


_DEFAULTS: dict[str, Any] = {"index": 0, "count": 0, "devmem": 0, "devcore": 0, "numa": 0, "health": False}


def decode_node_register(text: str) -> tuple[NodeDevice, ...]:
    """Inverse of encode; missing keys take Go's zero values (HAMi writes with omitempty), extra keys are ignored."""
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


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
