"""A read-only picture of the node the agent manages, taken under its lock; metrics and the demo read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MigMode = Literal["enabled", "disabled", "pending", "unknown"]
InstanceState = Literal["in_use", "free"]


@dataclass(frozen=True)
class Holder:
    """The pod container that holds an instance."""

    namespace: str
    pod: str
    container: int  # index in HAMi's order: init containers first, then containers
    uid: str = ""
    device: str = ""  # the device HAMi's vgpu-devices-allocated records for it (GPU-<uuid>[g-s]); "" if none
    device_mib: int | None = None  # the memory that record gives (what HAMi's metrics sum)
    device_cores: int = 0

    def label(self) -> str:
        return f"{self.namespace}/{self.pod}#{self.container}"


@dataclass(frozen=True)
class InstanceView:
    """One MIG instance on a GPU, with who holds it."""

    profile: str
    start: int
    size: int
    memory_mib: int
    state: InstanceState
    mig_uuid: str | None = None
    gi_id: int | None = None
    ci_id: int | None = None
    holder: Holder | None = None
    processes: int | None = None  # None: unknown (no permission)


@dataclass(frozen=True)
class SlotView:
    """One slot of the GPU's current layout, numbered as HAMi's `nodeGPUMigInstance` does."""

    slot: int
    profile: str
    in_use: bool

    @property
    def mig_name(self) -> str:
        return f"{self.profile}-{self.slot}"


@dataclass(frozen=True)
class GpuView:
    """One physical GPU as the agent sees it."""

    index: int
    uuid: str
    name: str
    memory_mib: int
    mig_mode: MigMode
    healthy: bool
    managed: bool
    reason: str = ""  # why the GPU is not managed, or why it is unhealthy
    numa_node: int | None = None
    memory_slices: int = 0
    geometry_index: int | None = None  # the configured geometry the layout matches, if any
    slots: tuple[SlotView, ...] = ()
    instances: tuple[InstanceView, ...] = ()
    free_capacity: dict[str, int] = field(default_factory=dict)
    fragmentation: float = 0.0


@dataclass(frozen=True)
class NodeSnapshot:
    """Everything `/metrics` and the demo show, computed at one instant."""

    node: str
    gpus: tuple[GpuView, ...] = ()
    pods_waiting: int = 0
    registered: bool = False
    nvml_ok: bool = False
    api_ok: bool = False
    taken_at: float = 0.0
