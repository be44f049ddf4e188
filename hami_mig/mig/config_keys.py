"""Unknown keys in HAMi's device-config.yaml: HAMi's YAML reader drops them silently, so a misspelt
`knownMigGeometrys` quietly means "the built-in table". Offline commands refuse such a file; the agent
warns once and goes on. The key sets are HAMi's own config structs, so every key HAMi reads is accepted.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The top-level sections of HAMi's device-config.yaml: `Config` in pkg/scheduler/config/config.go
# (v2.7.0 ... v2.10.0; pkg/device/devices.go before v2.7.0). `iluvatar` became `iluvatars` in v2.8.0.
VENDOR_SECTIONS: frozenset[str] = frozenset({
    "nvidia", "metax", "hygon", "cambricon", "mthreads", "iluvatar", "iluvatars", "enflame", "kunlun",
    "awsneuron", "amd", "vastai", "biren", "vnpus",
})

# The `nvidia:` section: `NvidiaConfig` and its inlined `NodeDefaultConfig` in pkg/device/nvidia/device.go,
# the union over v2.5.0 ... v2.10.0 (memoryFactor from v2.8.0, preConfiguredDeviceMemory from v2.9.0,
# migProfileAllowlist and enableNumaTopology from v2.10.0). `migstrategy` is no NvidiaConfig field but is
# seen in real files (it belongs to the device plugin's config.json); HAMi ignores it and so do we.
NVIDIA_KEYS: frozenset[str] = frozenset({
    "resourceCountName", "resourceMemoryName", "resourceCoreName", "resourceMemoryPercentageName",
    "resourcePriorityName", "overwriteEnv", "defaultMemory", "defaultCores", "defaultGPUNum", "memoryFactor",
    "disableCoreLimit", "knownMigGeometries", "migProfileAllowlist", "gpuCorePolicy", "runtimeClassName",
    "deviceSplitCount", "deviceMemoryScaling", "deviceCoreScaling", "preConfiguredDeviceMemory",
    "libCudaLogLevel", "enableNumaTopology", "migstrategy",
})

# One `knownMigGeometries` item and one geometry entry: `AllowedMigGeometries` and `Geometry` in
# pkg/device/devices.go (v2.9.0).
RULE_KEYS: frozenset[str] = frozenset({"models", "allowedGeometries"})
ENTRY_KEYS: frozenset[str] = frozenset({"name", "memory", "count", "core"})


@dataclass(frozen=True)
class UnknownKey:
    """A key no HAMi version reads at this place in the file, with the valid key nearest to it."""

    path: str  # where it is, e.g. "nvidia.knownMigGeometrys"
    key: str
    nearest: str

    @property
    def message(self) -> str:
        return f"{self.path}: unknown key {self.key!r} (did you mean {self.nearest!r}?); HAMi ignores it"


def nearest_key(key: str, valid: Iterable[str]) -> str:
    """The valid key closest to `key`: same spelling in another case first, then by similarity."""
    choices = sorted(valid)
    for choice in choices:
        if choice.lower() == key.lower():
            return choice
    scored = [(difflib.SequenceMatcher(None, key.lower(), c.lower()).ratio(), c) for c in choices]
    return max(scored, key=lambda s: (s[0], -len(s[1])))[1]


def _check(raw: Mapping[Any, Any], valid: frozenset[str], where: str) -> list[UnknownKey]:
    return [UnknownKey(f"{where}{key}", str(key), nearest_key(str(key), valid))
            for key in raw if str(key) not in valid]


def unknown_keys(doc: Any) -> list[UnknownKey]:
    """Every unknown key of a parsed device-config (the whole file, or only its `nvidia:` section).

    Other vendors' sections are HAMi's business and are not looked into. Values of the wrong type
    are left to the parser, which names them.
    """
    if not isinstance(doc, Mapping):
        return []
    found: list[UnknownKey] = []
    if "nvidia" in doc:
        found += _check(doc, VENDOR_SECTIONS, "")
        section, where = doc["nvidia"], "nvidia."
        if not isinstance(section, Mapping):
            return found
    else:  # a bare `nvidia:` section; a misspelt vendor name is as unknown as a misspelt nvidia key
        section, where = doc, ""
    found += _check(section, NVIDIA_KEYS if where else NVIDIA_KEYS | VENDOR_SECTIONS, where)
    rules = section.get("knownMigGeometries")
    for r, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, Mapping):
            continue
        rwhere = f"{where}knownMigGeometries[{r}]"
        found += _check(rule, RULE_KEYS, rwhere + ".")
        geometries = rule.get("allowedGeometries")
        for g, geometry in enumerate(geometries if isinstance(geometries, list) else []):
            for e, entry in enumerate(geometry if isinstance(geometry, list) else []):
                if isinstance(entry, Mapping):
                    found += _check(entry, ENTRY_KEYS, f"{rwhere}.allowedGeometries[{g}][{e}].")
    return found
