"""What the planner decides: allocations and the ordered NVML operations that realize them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OpKind = Literal["create", "destroy"]


@dataclass(frozen=True)
class Operation:
    """One mutating NVML step: destroy a free instance, or create one at an exact placement."""

    op: OpKind
    gpu_index: int
    profile: str
    start: int
    gpu_uuid: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "gpu_index": self.gpu_index, "profile": self.profile,
                               "start": self.start}
        if self.gpu_uuid:
            out["gpu_uuid"] = self.gpu_uuid
        return out


@dataclass(frozen=True)
class Allocation:
    """The instance one request gets on one GPU, and where it sits in the chosen geometry."""

    gpu_index: int
    gpu_uuid: str
    profile: str
    start: int
    memory_mib: int
    reuse: bool
    geometry_index: int | None = None  # index in the model's allowedGeometries; None in `any` mode
    slot: int | None = None  # index in the flattened geometry; None in `any` mode
    uuid: str | None = None  # MIG UUID when an existing instance is reused

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu_index": self.gpu_index,
            "gpu_uuid": self.gpu_uuid,
            "geometry_index": self.geometry_index,
            "slot": self.slot,
            "profile": self.profile,
            "start": self.start,
            "memory_mib": self.memory_mib,
            "reuse": self.reuse,
        }


@dataclass(frozen=True)
class Decision:
    """A plan when `fits`, else the reason nothing fits. Operations are in execution order."""

    fits: bool
    allocations: tuple[Allocation, ...] = ()
    operations: tuple[Operation, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        if not self.fits:
            return {"fits": False, "reason": self.reason}
        return {
            "fits": True,
            "allocations": [a.to_json() for a in self.allocations],
            "operations": [o.to_json() for o in self.operations],
        }
