"""The MIG profile tables of every supported GPU model, and exact model lookup by NVML name.

The packaged `data/mig_profiles.json` is the offline truth (simulator, `hami-mig plan`). On a
node the agent builds the same `GpuModel` from what NVML reports instead (see `nvml/`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from typing import Any

from hami_mig.errors import HamiMigError


class UnknownModelError(HamiMigError, KeyError):
    """A GPU name that matches no catalogue model exactly (after normalisation)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown GPU model {name!r}; known models: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownProfileError(HamiMigError, KeyError):
    """A MIG profile name that the model does not offer; names the nearest real profile."""

    def __init__(self, model: str, profile: str, nearest: str | None, known: Iterable[str]) -> None:
        self.model = model
        self.profile = profile
        self.nearest = nearest
        hint = f" (did you mean {nearest}?)" if nearest else ""
        super().__init__(
            f"{model} has no MIG profile {profile!r}{hint}; its profiles: {', '.join(known)}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Profile:
    """One GPU-instance profile: its slices, real memory, how many fit and where they may start."""

    name: str
    compute_slices: int
    memory_slices: int
    memory_mib: int
    max_count: int
    starts: tuple[int, ...]
    nvml_profile_id: int = -1  # NVML_GPU_INSTANCE_PROFILE_* enum (argument of the profile-info call)
    smi_profile_id: int = -1  # the id NVML returns in info.id and takes back for create calls
    confirmed: bool = True

    @property
    def media_extension(self) -> bool:
        """`+me` profiles own the GPU's single media engine set; the planner never picks them."""
        return "+me" in self.name

    def slices(self, start: int) -> range:
        return range(start, start + self.memory_slices)


@dataclass(frozen=True)
class GpuModel:
    """A GPU model's MIG table: the planner's whole view of the hardware."""

    name: str
    memory_slices: int
    compute_slices: int
    profiles: tuple[Profile, ...]
    memory_mib: int | None = None
    aliases: tuple[str, ...] = ()
    _by_name: Mapping[str, Profile] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.profiles})

    def has_profile(self, name: str) -> bool:
        return name in self._by_name

    def profile(self, name: str) -> Profile:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownProfileError(
                self.name, name, nearest_profile(self, name), [p.name for p in self.profiles]
            ) from None

    @cached_property
    def plannable(self) -> tuple[Profile, ...]:
        """Profiles the planner may create: every one except the media-extension variants."""
        return tuple(p for p in self.profiles if not p.media_extension)

    @cached_property
    def largest(self) -> Profile:
        """The largest single-instance profile: what a request for a whole GPU gets."""
        return max(self.plannable, key=lambda p: (p.memory_mib, p.compute_slices))

    @property
    def total_memory_mib(self) -> int:
        """Physical memory when known, else the largest profile's memory (for percentages)."""
        return self.memory_mib if self.memory_mib is not None else self.largest.memory_mib


def normalise_model_name(name: str) -> str:
    """Case, an `NVIDIA ` prefix and spaces/dashes/underscores do not distinguish two models."""
    text = name.strip().lower()
    text = re.sub(r"^nvidia[\s_-]+", "", text)
    return re.sub(r"[\s_-]+", "-", text)


_SIZE = re.compile(r"^(?:(?P<ci>\d+)c\.)?(?P<g>\d+)g\.(?P<gb>\d+)gb(?P<ext>\+.*)?$")


def nearest_profile(model: GpuModel, name: str) -> str | None:
    """The real profile a mistyped or drifted name most likely means (same compute slices, closest GB)."""
    m = _SIZE.match(name.strip().lower())
    if not m:
        return None
    g, gb, ext = int(m["g"]), int(m["gb"]), m["ext"] or ""
    candidates = [p for p in model.profiles if (pm := _SIZE.match(p.name)) and pm["g"] == str(g)]
    candidates = [p for p in candidates if ("+me" in p.name) == ("+me" in ext)] or candidates
    if not candidates:
        return None
    def gb_of(p: Profile) -> int:
        pm = _SIZE.match(p.name)
        return int(pm["gb"]) if pm else 0
    return min(candidates, key=lambda p: (abs(gb_of(p) - gb), p.memory_slices)).name


class Catalogue:
    """Every known model, looked up by exact normalised name or alias, never by substring."""

    def __init__(self, models: Iterable[GpuModel]) -> None:
        self.models: tuple[GpuModel, ...] = tuple(models)
        self._index: dict[str, GpuModel] = {}
        for model in self.models:
            for key in (model.name, *model.aliases):
                self._index.setdefault(normalise_model_name(key), model)

    def find(self, name: str) -> GpuModel | None:
        return self._index.get(normalise_model_name(name))

    def lookup(self, name: str) -> GpuModel:
        model = self.find(name)
        if model is None:
            raise UnknownModelError(name, [m.name for m in self.models])
        return model

    def names(self) -> list[str]:
        return [m.name for m in self.models]


def model_from_json(raw: Mapping[str, Any]) -> GpuModel:
    profiles = tuple(
        Profile(
            name=str(p["name"]),
            compute_slices=int(p["compute_slices"]),
            memory_slices=int(p["memory_slices"]),
            memory_mib=int(p["memory_mib"]),
            max_count=int(p["max_count"]),
            starts=tuple(int(pl["start"]) for pl in p["placements"]),
            nvml_profile_id=int(p["nvml_profile_id"]),
            smi_profile_id=int(p["smi_profile_id"]),
            confirmed=bool(p.get("confirmed", True)),
        )
        for p in raw["profiles"]
    )
    return GpuModel(
        name=str(raw["name"]),
        memory_slices=int(raw["memory_slices"]),
        compute_slices=int(raw["compute_slices"]),
        profiles=profiles,
        memory_mib=None if raw.get("memory_mib") is None else int(raw["memory_mib"]),
        aliases=tuple(str(a) for a in raw.get("aliases", ())),
    )


@cache
def default_catalogue() -> Catalogue:
    """The catalogue packaged with hami-mig (a copy of the project's `mig_profiles.json`)."""
    text = resources.files("hami_mig.mig").joinpath("data/mig_profiles.json").read_text("utf-8")
    return Catalogue(model_from_json(m) for m in json.loads(text)["models"])
