"""The agent's settings, gathered from flags and the two HAMi ConfigMaps."""

from __future__ import annotations

from dataclasses import dataclass, field

from hami_mig.kube.annotations import MODE_MIG
from hami_mig.kube.resources import DEFAULT_NAMES, ResourceNames
from hami_mig.mig.geometry import DeviceConfig, default_device_config
from hami_mig.mig.planner import GeometryMode, Policy

RESOURCE_NAME = "nvidia.com/gpu"


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    device_config: DeviceConfig = field(default_factory=default_device_config)
    mode: str = MODE_MIG  # the node's HAMi operating mode; only `mig` GPUs are managed
    split_count: int = 10
    filter_uuids: tuple[str, ...] = ()
    filter_indices: tuple[int, ...] = ()
    policy: Policy = "hami"
    geometries: GeometryMode = "config"
    names: ResourceNames = DEFAULT_NAMES
    cdi: bool = False
    allocate_timeout_s: float = 30.0
    reconcile_interval_s: float = 30.0
    idle_release_s: float = 0.0  # 0: keep free instances until a reshape needs the room
    events: bool = True

    def filtered(self, uuid: str, index: int) -> bool:
        return uuid in self.filter_uuids or index in self.filter_indices
