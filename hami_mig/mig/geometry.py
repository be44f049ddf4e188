"""HAMi's `knownMigGeometries`: parsing the device-config, checking it against the hardware,
and resolving the ordered geometry list that applies to one GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import yaml

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import (
    Catalogue,
    GpuModel,
    Profile,
    UnknownProfileError,
    nearest_profile,
    normalise_model_name,
)
from hami_mig.mig.config_keys import UnknownKey, unknown_keys
from hami_mig.mig.layout import for_model
from hami_mig.mig.yamldoc import load_yaml


@dataclass(frozen=True)
class GeometryEntry:
    """`{name: 2g.20gb, memory: 19968, count: 3, core: 28}`: `count` instances of one profile."""

    name: str
    memory: int
    count: int
    core: int = 0


@dataclass(frozen=True)
class Geometry:
    """One whole-GPU layout, as ordered in the config; slots are the entries flattened in order."""

    entries: tuple[GeometryEntry, ...]

    @property
    def slots(self) -> tuple[GeometryEntry, ...]:
        return tuple(e for e in self.entries for _ in range(e.count))

    def describe(self) -> str:
        return " + ".join(f"{e.count}x {e.name}" for e in self.entries)


@dataclass(frozen=True)
class GeometryRule:
    """One `knownMigGeometries` item: the model strings it names and their allowed geometries."""

    models: tuple[str, ...]
    geometries: tuple[Geometry, ...]


@dataclass(frozen=True)
class DeviceConfig:
    """The `nvidia:` section of HAMi's device-config.yaml, with the fields hami-mig uses."""

    rules: tuple[GeometryRule, ...]
    resource_count_name: str = "nvidia.com/gpu"
    resource_memory_name: str = "nvidia.com/gpumem"
    resource_memory_percentage_name: str = "nvidia.com/gpumem-percentage"
    resource_core_name: str = "nvidia.com/gpucores"
    device_split_count: int = 10
    default_memory: int = 0
    default_cores: int = 0
    default_gpu_num: int = 1
    memory_factor: int = 1
    # Keys HAMi does not read (a typo, most likely): offline commands refuse the file, the agent warns.
    unknown_keys: tuple[UnknownKey, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Finding:
    """One result of checking a config: an error makes the geometry unusable on that model."""

    level: Literal["error", "warning", "info"]
    message: str
    rule: int | None = None
    geometry: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class Slot:
    """One slot of a resolved geometry: the GPU's own profile plus the config's nominal numbers."""

    index: int
    profile: Profile
    nominal_memory: int
    core: int


@dataclass(frozen=True)
class ResolvedGeometry:
    """A geometry made concrete for one GPU's profile table; `index` is its place in the config."""

    index: int
    slots: tuple[Slot, ...]

    @cached_property
    def profiles(self) -> tuple[str, ...]:
        return tuple(s.profile.name for s in self.slots)

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for s in self.slots:
            counts[s.profile.name] = counts.get(s.profile.name, 0) + 1
        return " + ".join(f"{n}x {p}" for p, n in counts.items())


# --------------------------------------------------------------------------- parsing

def _int(value: Any, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(field, value, f"a whole number >= {minimum}")
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(field, value, "a non-empty string")
    return value.strip()


def _entry(raw: Any, field: str) -> GeometryEntry:
    if not isinstance(raw, Mapping):
        raise InputError(field, raw, "a mapping {name, memory, count, core}")
    for key in ("name", "memory", "count"):
        if key not in raw:
            raise InputError(f"{field}.{key}", None, "this key is required")
    return GeometryEntry(
        name=_str(raw["name"], f"{field}.name"),
        memory=_int(raw["memory"], f"{field}.memory", 0),
        count=_int(raw["count"], f"{field}.count", 1),
        core=_int(raw.get("core", 0) or 0, f"{field}.core", 0),
    )


def _rule(raw: Any, field: str) -> GeometryRule:
    if not isinstance(raw, Mapping):
        raise InputError(field, raw, "a mapping with `models` and `allowedGeometries`")
    models = raw.get("models")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise InputError(f"{field}.models", models, "a non-empty list of GPU model names")
    geometries = raw.get("allowedGeometries")
    if not isinstance(geometries, list) or not geometries:
        raise InputError(f"{field}.allowedGeometries", geometries, "a non-empty list of geometries")
    parsed: list[Geometry] = []
    for g, geo in enumerate(geometries):
        gfield = f"{field}.allowedGeometries[{g}]"
        if not isinstance(geo, list) or not geo:
            raise InputError(gfield, geo, "a non-empty list of {name, memory, count, core} entries")
        parsed.append(Geometry(tuple(_entry(e, f"{gfield}[{i}]") for i, e in enumerate(geo))))
    return GeometryRule(tuple(_str(m, f"{field}.models[{i}]") for i, m in enumerate(models)), tuple(parsed))


def parse_device_config(text: str, source: str = "device-config.yaml") -> DeviceConfig:
    """Parse HAMi's device-config.yaml (or just its `nvidia:` section); unknown keys are kept in `unknown_keys`."""
    doc = load_yaml(text, source)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise InputError(source, type(doc).__name__, "a YAML mapping with an `nvidia:` section")
    section = doc.get("nvidia", doc)
    if not isinstance(section, Mapping):
        raise InputError("nvidia", section, "a mapping")
    raw_rules = section.get("knownMigGeometries")
    if raw_rules is None:
        rules = default_device_config().rules
    elif not isinstance(raw_rules, list):
        raise InputError("nvidia.knownMigGeometries", raw_rules, "a list of {models, allowedGeometries}")
    else:
        rules = tuple(_rule(r, f"knownMigGeometries[{i}]") for i, r in enumerate(raw_rules))
    return DeviceConfig(
        rules=rules,
        resource_count_name=_str(section.get("resourceCountName", "nvidia.com/gpu"), "nvidia.resourceCountName"),
        resource_memory_name=_str(section.get("resourceMemoryName", "nvidia.com/gpumem"), "nvidia.resourceMemoryName"),
        resource_memory_percentage_name=_str(
            section.get("resourceMemoryPercentageName", "nvidia.com/gpumem-percentage"),
            "nvidia.resourceMemoryPercentageName",
        ),
        resource_core_name=_str(section.get("resourceCoreName", "nvidia.com/gpucores"), "nvidia.resourceCoreName"),
        device_split_count=_int(section.get("deviceSplitCount", 10), "nvidia.deviceSplitCount", 1),
        default_memory=_int(section.get("defaultMemory", 0) or 0, "nvidia.defaultMemory", 0),
        default_cores=_int(section.get("defaultCores", 0) or 0, "nvidia.defaultCores", 0),
        default_gpu_num=_int(section.get("defaultGPUNum", 1), "nvidia.defaultGPUNum", 1),
        memory_factor=max(_int(section.get("memoryFactor", 1) or 1, "nvidia.memoryFactor", 0), 1),
        unknown_keys=tuple(unknown_keys(doc)),
    )


def _g(*entries: tuple[int, str, int, int]) -> Geometry:
    return Geometry(tuple(GeometryEntry(name, memory, count, core) for count, name, memory, core in entries))


_HAMI_DEFAULT_RULES: tuple[GeometryRule, ...] = (
    GeometryRule(("A30",), (
        _g((4, "1g.6gb", 6144, 25)), _g((2, "2g.12gb", 12288, 50)), _g((1, "4g.24gb", 24576, 100)))),
    GeometryRule(("A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB"), (
        _g((7, "1g.5gb", 5120, 14)), _g((1, "1g.5gb", 5120, 14), (3, "2g.10gb", 10240, 28)),
        _g((2, "3g.20gb", 20480, 42)), _g((1, "7g.40gb", 40960, 100)))),
    GeometryRule(("A100-SXM4-80GB", "A100-80GB-PCIe", "A100-PCIE-80GB"), (
        _g((7, "1g.10gb", 9728, 14)), _g((1, "1g.10gb", 9728, 14), (3, "2g.20gb", 19968, 28)),
        _g((2, "3g.40gb", 40192, 42)), _g((1, "7g.80gb", 80896, 98)))),
    GeometryRule(("H100-PCIE-80GB", "H100-SXM5-80GB"), (
        _g((7, "1g.10gb", 10240, 14)), _g((1, "1g.10gb", 10240, 14), (3, "2g.20gb", 20480, 28)),
        _g((2, "3g.40gb", 40960, 42)), _g((1, "7g.80gb", 81920, 100)))),
    GeometryRule(("H100-PCIE-94GB", "H100-SXM5-94GB"), (
        _g((7, "1g.12gb", 12288, 14)), _g((1, "1g.12gb", 12288, 14), (3, "2g.24gb", 24576, 28)),
        _g((2, "3g.47gb", 48128, 42)), _g((1, "7g.94gb", 96256, 100)))),
    GeometryRule(("H20", "H100 on GH200"), (
        _g((7, "1g.12gb", 12288, 14)), _g((1, "1g.12gb", 12288, 14), (3, "2g.24gb", 24576, 28)),
        _g((2, "3g.48gb", 49152, 42)), _g((1, "7g.96gb", 98304, 100)))),
    GeometryRule(("H200 NVL", "H200-SXM5"), (
        _g((7, "1g.18gb", 18432, 14)), _g((1, "1g.18gb", 18432, 14), (3, "2g.35gb", 35840, 28)),
        _g((2, "3g.71gb", 72704, 42)), _g((1, "7g.141gb", 144384, 100)))),
    GeometryRule(("B200",), (
        _g((7, "1g.23gb", 23552, 14)), _g((1, "1g.23gb", 23552, 14), (3, "2g.45gb", 46080, 28)),
        _g((2, "3g.90gb", 92160, 42)), _g((1, "7g.180gb", 184320, 100)))),
)


def default_device_config() -> DeviceConfig:
    """HAMi's built-in `knownMigGeometries` table (last legacy state), used when no file is given."""
    return DeviceConfig(rules=_HAMI_DEFAULT_RULES)


def dump_device_config(config: DeviceConfig) -> str:
    """YAML in HAMi's format (for the Helm chart and `hami-mig config` output)."""
    doc = {
        "nvidia": {
            "resourceCountName": config.resource_count_name,
            "resourceMemoryName": config.resource_memory_name,
            "resourceMemoryPercentageName": config.resource_memory_percentage_name,
            "resourceCoreName": config.resource_core_name,
            "deviceSplitCount": config.device_split_count,
            "defaultMemory": config.default_memory,
            "defaultCores": config.default_cores,
            "defaultGPUNum": config.default_gpu_num,
            "knownMigGeometries": [
                {
                    "models": list(rule.models),
                    "allowedGeometries": [
                        [{"name": e.name, "memory": e.memory, "count": e.count, "core": e.core} for e in g.entries]
                        for g in rule.geometries
                    ],
                }
                for rule in config.rules
            ],
        }
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------- checking and resolving


def gpu_profile(gpu: GpuModel, name: str, reference: GpuModel | None = None) -> Profile:
    """The GPU's own profile for a config name, also when the driver spells it differently.

    Names drift between drivers (A100-80GB `3g.39gb` vs `3g.40gb`): when the GPU's table lacks the
    name, map it through the catalogue model's NVML profile enum, which does not drift.
    """
    if gpu.has_profile(name):
        return gpu.profile(name)
    if reference is not None and reference.has_profile(name):
        enum = reference.profile(name).nvml_profile_id
        for p in gpu.profiles:
            if p.nvml_profile_id == enum and enum >= 0:
                return p
    return gpu.profile(name)  # raises UnknownProfileError with the nearest real name


def check_geometry(
    geometry: Geometry, gpu: GpuModel, reference: GpuModel | None = None
) -> tuple[ResolvedGeometry | None, list[str], list[str]]:
    """Resolve one geometry on one GPU table: (resolved or None, errors, warnings)."""
    errors: list[str] = []
    warnings: list[str] = []
    slots: list[Slot] = []
    counts: dict[str, int] = {}
    for entry in geometry.entries:
        try:
            profile = gpu_profile(gpu, entry.name, reference)
        except UnknownProfileError:
            hint = nearest_profile(gpu, entry.name)
            errors.append(
                f"{entry.name} is not a MIG profile of this GPU"
                + (f" (nearest real profile: {hint})" if hint else "")
                + f"; its profiles: {', '.join(p.name for p in gpu.plannable)}"
            )
            continue
        counts[profile.name] = counts.get(profile.name, 0) + entry.count
        if entry.memory > profile.memory_mib:
            warnings.append(
                f"{entry.name}: nominal memory {entry.memory} MiB exceeds the real {profile.memory_mib} MiB; "
                f"requests are compared with the real {profile.memory_mib} MiB"
            )
        for _ in range(entry.count):
            slots.append(Slot(len(slots), profile, entry.memory, entry.core))
    for name, n in counts.items():
        if n > gpu.profile(name).max_count:
            errors.append(f"{n}x {name} exceeds the hardware maximum of {gpu.profile(name).max_count}")
    if errors:
        return None, errors, warnings
    needed = sum(s.profile.memory_slices for s in slots)
    if needed > gpu.memory_slices:
        errors.append(
            f"{geometry.describe()} needs {needed} memory slices, the GPU has {gpu.memory_slices}"
        )
        return None, errors, warnings
    if not for_model(gpu).realizable(0, [s.profile.name for s in slots]):
        errors.append(f"{geometry.describe()} has no non-overlapping placement on this GPU")
        return None, errors, warnings
    return ResolvedGeometry(index=-1, slots=tuple(slots)), errors, warnings


def validate_device_config(config: DeviceConfig, catalogue: Catalogue) -> list[Finding]:
    """Check every geometry against the catalogue for every model it names."""
    findings: list[Finding] = []
    for r, rule in enumerate(config.rules):
        seen: set[str] = set()
        for model_name in rule.models:
            model = catalogue.find(model_name)
            if model is not None and model.name in seen:
                continue  # two spellings of one model: report its geometries once
            if model is None:
                findings.append(Finding(
                    "info", f"knownMigGeometries[{r}]: model {model_name!r} is not in the catalogue; kept as is",
                    rule=r, model=model_name))
                continue
            seen.add(model.name)
            for g, geometry in enumerate(rule.geometries):
                _resolved, errors, warnings = check_geometry(geometry, model)
                where = f"knownMigGeometries[{r}].allowedGeometries[{g}] for {model_name}"
                findings += [Finding("error", f"{where}: {e}", r, g, model_name) for e in errors]
                findings += [Finding("warning", f"{where}: {w}", r, g, model_name) for w in warnings]
    return findings


@dataclass(frozen=True)
class GpuGeometries:
    """The ordered, usable geometries for one GPU, and which config entry they came from."""

    geometries: tuple[ResolvedGeometry, ...]
    rule: int | None
    matched_model: str | None
    skipped: tuple[str, ...] = ()


def resolve_for_gpu(
    config: DeviceConfig, gpu: GpuModel, catalogue: Catalogue
) -> GpuGeometries:
    """The geometries that apply to a GPU: the first rule naming the GPU's model, matched exactly.

    Both the config's model strings and the GPU's NVML name are resolved to catalogue models, so
    `H20` never matches an H200 and `H100-SXM5-80GB` finds `NVIDIA H100 80GB HBM3`. Geometries that
    do not fit this GPU are skipped (listed in `skipped`) and the valid ones kept.
    """
    reference = catalogue.find(gpu.name)
    for r, rule in enumerate(config.rules):
        for model_name in rule.models:
            target = catalogue.find(model_name)
            hit = (target is not None and reference is not None and target.name == reference.name) or (
                target is None and _same_name(model_name, gpu.name)
            )
            if not hit:
                continue
            resolved: list[ResolvedGeometry] = []
            skipped: list[str] = []
            for g, geometry in enumerate(rule.geometries):
                geo, errors, _warnings = check_geometry(geometry, gpu, reference)
                if geo is None:
                    skipped.append(f"knownMigGeometries[{r}].allowedGeometries[{g}]: {'; '.join(errors)}")
                    continue
                resolved.append(ResolvedGeometry(index=g, slots=geo.slots))
            return GpuGeometries(tuple(resolved), r, model_name, tuple(skipped))
    return GpuGeometries((), None, None)


def _same_name(a: str, b: str) -> bool:
    return normalise_model_name(a) == normalise_model_name(b)

