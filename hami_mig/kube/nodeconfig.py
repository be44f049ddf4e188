"""The device-plugin node ConfigMap (`config.json`): which mode a node runs in and which GPUs it leaves alone.

Keys are matched as HAMi's Go decoder matches them (`DevicePluginConfigs` in pkg/device/nvidia/device.go):
without regard to case, so `operatingMode` sets `operatingmode`.

hami-mig extension, ignored by HAMi's own device plugin (Go's JSON decoder skips unknown keys): a
per-node `gpus` list sets the operating mode of single GPUs, e.g.
`"gpus": [{"index": 1, "operatingmode": "hami-core"}, {"uuid": "GPU-…", "operatingmode": "mig"}]`.
A GPU not listed runs in the node's `operatingmode`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODE_HAMI_CORE, MODES

CONFIG_KEY = "config.json"
DEFAULT_SPLIT_COUNT = 10


@dataclass(frozen=True)
class GpuMode:
    """One `gpus` entry: the operating mode of the GPU with this UUID or index."""

    mode: str
    uuid: str | None = None
    index: int | None = None

    def selects(self, uuid: str, index: int) -> bool:
        return (self.uuid is not None and self.uuid == uuid) or (self.index is not None and self.index == index)


@dataclass(frozen=True)
class NodeConfig:
    """One node's entry; a node not listed gets the defaults (hami-core, the device-config's split count)."""

    name: str
    operating_mode: str = MODE_HAMI_CORE
    device_split_count: int = DEFAULT_SPLIT_COUNT
    filter_uuids: tuple[str, ...] = ()
    filter_indices: tuple[int, ...] = ()
    device_memory_scaling: float | None = None
    device_core_scaling: float | None = None
    mig_strategy: str | None = None
    gpu_modes: tuple[GpuMode, ...] = ()
    """hami-mig's per-GPU `gpus` list; a UUID entry wins over an index entry."""
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    """Other HAMi keys we do not act on, as (key, JSON text), so a check can list them."""

    def __post_init__(self) -> None:
        if self.operating_mode not in MODES:
            raise InputError(f"{CONFIG_KEY} node {self.name!r} operatingmode", self.operating_mode, _MODES_ALLOWED)

    def filters(self, uuid: str, index: int) -> bool:
        """True when the GPU is listed in filterdevices and must not be managed."""
        return uuid in self.filter_uuids or index in self.filter_indices

    def mode_of(self, uuid: str, index: int) -> tuple[str, bool]:
        """(operating mode of one GPU, whether a `gpus` entry names it explicitly)."""
        return gpu_mode(self.gpu_modes, self.operating_mode, uuid, index)


def gpu_mode(rules: tuple[GpuMode, ...], default: str, uuid: str, index: int) -> tuple[str, bool]:
    """The mode of one GPU under `rules` (UUID entries first, then index entries), else `default`."""
    for rule in sorted(rules, key=lambda r: r.uuid is None):
        if rule.selects(uuid, index):
            return rule.mode, True
    return default, False


_MODES_ALLOWED = f"one of {', '.join(MODES)}"


def parse_node_configs(text: str, default_split_count: int = DEFAULT_SPLIT_COUNT) -> tuple[NodeConfig, ...]:
    """Every entry of `config.json`; an empty document or a missing `nodeconfig` means no entries."""
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(CONFIG_KEY, text[:200], f"valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(CONFIG_KEY, text[:200], 'a JSON object like {"nodeconfig": [...]}')
    entries = _go_keys(data, {"nodeconfig"}).get("nodeconfig")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise InputError(f"{CONFIG_KEY} nodeconfig", entries, "a list of per-node objects")
    return tuple(_parse_entry(position, entry, default_split_count) for position, entry in enumerate(entries))


def node_config_for(text: str, node_name: str, default_split_count: int = DEFAULT_SPLIT_COUNT) -> NodeConfig:
    """This node's entry, or the defaults; two different entries for the same node are an error, not a guess."""
    matches = [entry for entry in parse_node_configs(text, default_split_count) if entry.name == node_name]
    if not matches:
        return NodeConfig(name=node_name, device_split_count=default_split_count)
    if any(entry != matches[0] for entry in matches[1:]):
        raise InputError(f"{CONFIG_KEY} nodeconfig", node_name, "one entry per node (this node has differing ones)")
    return matches[0]


_KNOWN = {"name", "operatingmode", "devicesplitcount", "filterdevices", "devicememoryscaling", "devicecorescaling",
          "migstrategy", "gpus"}


def _go_keys(obj: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Keys as Go's encoding/json matches them to struct fields: without regard to case (`operatingMode` is
    `operatingmode`), the last of two spellings winning; other keys kept as written."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        folded = key.lower() if isinstance(key, str) else key
        out[folded if folded in known else key] = value
    return out


def _parse_entry(position: int, entry: object, default_split_count: int) -> NodeConfig:
    where = f"{CONFIG_KEY} nodeconfig[{position}]"
    if not isinstance(entry, dict):
        raise InputError(where, entry, 'an object like {"name": "node-a", "operatingmode": "mig"}')
    entry = _go_keys(entry, _KNOWN)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name", name, "the node name, a non-empty string")
    where = f"{CONFIG_KEY} node {name!r}"
    mode = entry.get("operatingmode") or MODE_HAMI_CORE
    if mode not in MODES:
        raise InputError(f"{where} operatingmode", mode, _MODES_ALLOWED)
    split = entry.get("devicesplitcount")
    if split is None:
        split = default_split_count
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise InputError(f"{where} devicesplitcount", split, "a whole number >= 1")
    uuids, indices = _parse_filters(where, entry.get("filterdevices"))
    extra = tuple(sorted((key, json.dumps(value, sort_keys=True)) for key, value in entry.items() if key not in _KNOWN))
    return NodeConfig(
        name=name,
        operating_mode=mode,
        device_split_count=split,
        filter_uuids=uuids,
        filter_indices=indices,
        device_memory_scaling=_optional_number(where, "devicememoryscaling", entry.get("devicememoryscaling")),
        device_core_scaling=_optional_number(where, "devicecorescaling", entry.get("devicecorescaling")),
        mig_strategy=_optional_str(where, "migstrategy", entry.get("migstrategy")),
        gpu_modes=_parse_gpu_modes(where, entry.get("gpus")),
        extra=extra,
    )


def _parse_filters(where: str, filters: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if filters is None:
        return (), ()
    if not isinstance(filters, dict):
        raise InputError(f"{where} filterdevices", filters, 'an object like {"uuid": [], "index": []}')
    filters = _go_keys(filters, {"uuid", "index"})
    uuids = filters.get("uuid") or []
    indices = filters.get("index") or []
    if not isinstance(uuids, list) or not all(isinstance(uuid, str) and uuid for uuid in uuids):
        raise InputError(f"{where} filterdevices.uuid", uuids, "a list of GPU UUID strings")
    if not isinstance(indices, list) or not all(
        isinstance(index, int) and not isinstance(index, bool) and index >= 0 for index in indices
    ):
        raise InputError(f"{where} filterdevices.index", indices, "a list of GPU indices (whole numbers >= 0)")
    return tuple(uuids), tuple(indices)


def _parse_gpu_modes(where: str, raw: Any) -> tuple[GpuMode, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(f"{where} gpus", raw, 'a list like [{"index": 0, "operatingmode": "mig"}]')
    out: list[GpuMode] = []
    seen: set[tuple[str, object]] = set()
    for n, item in enumerate(raw):
        field = f"{where} gpus[{n}]"
        if not isinstance(item, dict):
            raise InputError(field, item, 'an object like {"index": 0, "operatingmode": "mig"} or {"uuid": "GPU-…", …}')
        uuid, index = item.get("uuid"), item.get("index")
        if (uuid is None) == (index is None):
            raise InputError(field, item, "exactly one of uuid or index")
        if uuid is not None and (not isinstance(uuid, str) or not uuid):
            raise InputError(f"{field}.uuid", uuid, "a GPU UUID string")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise InputError(f"{field}.index", index, "a GPU index (whole number >= 0)")
        mode = item.get("operatingmode")
        if mode not in MODES:
            raise InputError(f"{field}.operatingmode", mode, _MODES_ALLOWED)
        unknown = sorted(set(item) - {"uuid", "index", "operatingmode"})
        if unknown:
            raise InputError(f"{field}", ", ".join(unknown), "only uuid, index and operatingmode")
        key = ("uuid", uuid) if uuid is not None else ("index", index)
        if key in seen:
            raise InputError(f"{field}", f"{key[0]} {key[1]}", "each GPU listed once")
        seen.add(key)
        out.append(GpuMode(mode=mode, uuid=uuid, index=index))
    return tuple(out)


def _optional_number(where: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{where} {key}", value, "a number > 0")
    return float(value)


def _optional_str(where: str, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where} {key}", value, "a string")
    return value
