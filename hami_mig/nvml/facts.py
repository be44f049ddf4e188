"""What does not change about a GPU while the driver stays loaded, read from NVML once per GPU.

Handle, UUID, name, memory, NUMA node; once MIG is on, the profile table with its placements, the
MIG device count, the compute-instance profiles each GPU-instance profile offers and the memory of a
MIG device of each profile; and which (GI id, CI id) a MIG UUID names (fixed for the UUID's life).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from hami_mig.mig.catalogue import GpuModel
from hami_mig.nvml import errors as E
from hami_mig.nvml.discovery import MIB, numa_node, total_memory_mib
from hami_mig.nvml.profiles import ci_profiles, decode, default_ci_profile, read_model


@dataclass(frozen=True)
class CiProfile:
    """A compute-instance profile a GPU instance offers: NVML's profile id and its compute slices."""

    id: int
    slices: int


@dataclass
class GpuFacts:
    """One GPU's fixed facts; the MIG ones are filled the first time they are needed."""

    index: int
    handle: Any
    uuid: str
    name: str
    memory_mib: int
    numa_node: int | None
    model: GpuModel | None = None
    max_mig_devices: int | None = None
    ci_profiles: dict[int, tuple[CiProfile, ...]] = field(default_factory=dict)  # GI profile id -> offered
    default_ci: dict[int, CiProfile] = field(default_factory=dict)  # GI profile id -> the whole-GI CI profile
    mig_memory: dict[int, int] = field(default_factory=dict)  # GI profile id -> MiB of its MIG device
    mig_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # MIG UUID -> (GI id, CI id)

    def forget_mig(self) -> None:
        """MIG mode changed: the profile table is read again once MIG is active."""
        self.model = None
        self.max_mig_devices = None
        self.mig_ids.clear()


class FactsCache:
    """GpuFacts per GPU index, read on first use; `forget` drops a GPU's (it is read again). GPUs of one
    model (same name and memory) share what NVML says about profiles, so it is asked once per model."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self._facts: dict[int, GpuFacts] = {}
        self._per_model: dict[tuple[str, int], GpuFacts] = {}
        self._count: int | None = None
        self._guard = threading.Lock()

    def count(self) -> int:
        if self._count is None:
            self._count = int(self.nvml.nvmlDeviceGetCount())
        return self._count

    def get(self, index: int) -> GpuFacts:
        """The GPU's facts; NVMLError when it cannot be queried (nothing is cached then)."""
        facts = self._facts.get(index)
        if facts is not None:
            return facts
        nvml = self.nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        facts = GpuFacts(index, handle, decode(nvml.nvmlDeviceGetUUID(handle)), decode(nvml.nvmlDeviceGetName(handle)),
                         total_memory_mib(nvml, handle), numa_node(nvml, handle))
        with self._guard:
            twin = self._per_model.setdefault((facts.name, facts.memory_mib), facts)
            facts.ci_profiles, facts.default_ci, facts.mig_memory = twin.ci_profiles, twin.default_ci, twin.mig_memory
            return self._facts.setdefault(index, facts)

    def forget_count(self) -> None:
        self._count = None

    def known(self, index: int) -> GpuFacts | None:
        return self._facts.get(index)

    def forget(self, index: int | None = None) -> None:
        with self._guard:
            if index is None:
                self._facts.clear()
                self._per_model.clear()
                self._count = None
            else:
                self._facts.pop(index, None)

    # -- the MIG facts (MIG mode must be active) -------------------------------------------------
    def model(self, facts: GpuFacts) -> GpuModel:
        if facts.model is None:
            facts.model = read_model(self.nvml, facts.handle, facts.name, facts.memory_mib)
        return facts.model

    def max_mig_devices(self, facts: GpuFacts) -> int:
        if facts.max_mig_devices is None:
            facts.max_mig_devices = int(self.nvml.nvmlDeviceGetMaxMigDeviceCount(facts.handle))
        return facts.max_mig_devices

    def ci_profiles(self, facts: GpuFacts, gi: Any, gi_profile_id: int) -> tuple[CiProfile, ...]:
        """Every CI profile a GI of this profile offers (the GI handle is used only the first time)."""
        cached = facts.ci_profiles.get(gi_profile_id)
        if cached is None:
            cached = tuple(CiProfile(int(p.id), int(p.sliceCount)) for p in ci_profiles(self.nvml, gi))
            facts.ci_profiles[gi_profile_id] = cached
        return cached

    def default_ci(self, facts: GpuFacts, gi: Any, gi_profile_id: int, slices: int) -> CiProfile:
        """The CI profile spanning a whole GI of this profile (HardwareError when the GI offers none)."""
        cached = facts.default_ci.get(gi_profile_id)
        if cached is None:
            info = default_ci_profile(self.nvml, gi, slices)
            cached = facts.default_ci[gi_profile_id] = CiProfile(int(info.id), int(info.sliceCount))
        return cached

    def mig_memory(self, facts: GpuFacts, mig: Any, gi_profile_id: int) -> int | None:
        """MiB of a MIG device of this GI profile; None when NVML will not say (the profile's figure is used)."""
        cached = facts.mig_memory.get(gi_profile_id)
        if cached is None:
            try:
                cached = int(self.nvml.nvmlDeviceGetMemoryInfo(mig).total) // MIB
            except self.nvml.NVMLError as exc:
                if E.nvml_code(exc) not in (E.NO_PERMISSION, E.NOT_SUPPORTED):
                    raise
                return None
            facts.mig_memory[gi_profile_id] = cached
        return cached
