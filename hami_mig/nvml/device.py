"""What discovery reports about a GPU and its MIG instances, and how that becomes the planner's GpuState."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.state import GpuState, Instance
from hami_mig.nvml.errors import MigDisabledError

MigMode = Literal["enabled", "disabled", "pending", "unknown"]


@dataclass(frozen=True)
class HwComputeInstance:
    """One compute instance = one MIG device (own UUID). `processes` None means we may not look: assume busy."""

    ci_id: int
    profile_id: int
    compute_slices: int
    mig_uuid: str | None
    memory_mib: int
    processes: tuple[int, ...] | None = ()

    @property
    def busy(self) -> bool:
        return self.processes is None or len(self.processes) > 0


@dataclass(frozen=True)
class HwInstance:
    """One GPU instance as the driver reports it, with its compute instances (normally one, full size)."""

    profile: str
    start: int
    size: int
    gi_id: int
    profile_id: int
    compute_slices: int
    memory_mib: int
    compute: tuple[HwComputeInstance, ...] = ()

    @property
    def standard(self) -> bool:
        """Exactly one CI spanning the whole GI: the shape hami-mig creates and may manage."""
        return len(self.compute) == 1 and self.compute[0].compute_slices == self.compute_slices

    @property
    def mig_uuid(self) -> str | None:
        return self.compute[0].mig_uuid if self.compute else None

    @property
    def ci_id(self) -> int | None:
        return self.compute[0].ci_id if self.compute else None

    @property
    def processes(self) -> tuple[int, ...] | None:
        """Pids on any of its MIG devices; None when any of them could not be queried."""
        pids: list[int] = []
        for ci in self.compute:
            if ci.processes is None:
                return None
            pids.extend(ci.processes)
        return tuple(sorted(set(pids)))

    @property
    def busy(self) -> bool:
        return any(ci.busy for ci in self.compute)

    def uuids(self) -> tuple[str, ...]:
        return tuple(ci.mig_uuid for ci in self.compute if ci.mig_uuid)

    def rows_json(self) -> list[dict[str, Any]]:
        """One row per MIG device (a GI without CI still gets a row, with null ids), for `devices --json`.
        `standard`: the GPU instance has the one full compute instance hami-mig makes (else the planner treats
        it as in use, whatever its processes)."""
        base = {"profile": self.profile, "start": self.start, "size": self.size, "gi_id": self.gi_id}
        if not self.compute:
            return [{**base, "ci_id": None, "mig_uuid": None, "memory_mib": self.memory_mib, "processes": [],
                     "standard": False}]
        return [
            {
                **base,
                "ci_id": ci.ci_id,
                "mig_uuid": ci.mig_uuid,
                "memory_mib": ci.memory_mib,
                "processes": "unknown" if ci.processes is None else list(ci.processes),
                "standard": self.standard,
            }
            for ci in self.compute
        ]


def enable_hint(index: int) -> str:
    """The one fix for a GPU not in MIG mode; hami-mig never runs it itself."""
    return (
        f"MIG mode is not enabled on GPU {index}; an administrator must run `nvidia-smi -i {index} -mig 1` "
        "(Ampere needs a GPU reset or reboot afterwards; Hopper and later switch at once)"
    )


@dataclass(frozen=True)
class GpuDevice:
    """One physical GPU: identity, MIG mode, NVML's own profile table, and the instances on it now."""

    index: int
    uuid: str
    name: str
    memory_mib: int
    mig_mode: MigMode
    numa_node: int | None = None
    model: GpuModel | None = None
    instances: tuple[HwInstance, ...] = ()
    message: str = ""

    @property
    def mig_enabled(self) -> bool:
        return self.mig_mode == "enabled" and self.model is not None

    def find(self, profile: str, start: int) -> HwInstance | None:
        return next((i for i in self.instances if i.profile == profile and i.start == start), None)

    def by_uuid(self, mig_uuid: str) -> HwInstance | None:
        return next((i for i in self.instances if mig_uuid in i.uuids()), None)

    def to_gpu_state(self, in_use_uuids: Collection[str] = ()) -> GpuState:
        """The planner's view. In use = a pod holds it, it has (or may have) processes, or its shape is foreign."""
        if not self.mig_enabled or self.model is None:
            raise MigDisabledError(self.message or enable_hint(self.index))
        held = set(in_use_uuids)
        instances = tuple(
            Instance(
                profile=hw.profile,
                start=hw.start,
                in_use=hw.busy or any(u in held for u in hw.uuids()) or (bool(hw.compute) and not hw.standard),
                uuid=hw.mig_uuid,
            )
            for hw in self.instances
        )
        return GpuState(index=self.index, uuid=self.uuid, model=self.model).with_instances(instances)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "memory_mib": self.memory_mib,
            "mig_mode": self.mig_mode,
            "numa_node": self.numa_node,
            "profiles": [] if self.model is None else [_profile_json(p) for p in self.model.profiles],
            "instances": [row for hw in self.instances for row in hw.rows_json()],
        }
        if self.message:
            out["message"] = self.message
        return out


def _profile_json(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "nvml_profile_id": p.nvml_profile_id,
        "memory_mib": p.memory_mib,
        "compute_slices": p.compute_slices,
        "memory_slices": p.memory_slices,
        "max_count": p.max_count,
        "placements": [{"start": s, "size": p.memory_slices} for s in p.starts],
    }
