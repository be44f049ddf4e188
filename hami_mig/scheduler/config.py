"""The extender's settings: the device config it plans with, and how it picks and locks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from hami_mig.kube.nodelock import LOCK_TIMEOUT
from hami_mig.kube.resources import ResourceNames
from hami_mig.mig.catalogue import Catalogue, default_catalogue
from hami_mig.mig.geometry import DeviceConfig, default_device_config
from hami_mig.mig.planner import GeometryMode, Policy

ScoreMode = Literal["binpack", "spread"]
SCORE_MODES: tuple[ScoreMode, ...] = ("binpack", "spread")
DEFAULT_SCHEDULER_NAME = "hami-scheduler"


def resource_names(config: DeviceConfig) -> ResourceNames:
    """The resource names (and default GPU count) a device config sets."""
    return ResourceNames.of(config)


@dataclass(frozen=True)
class SchedulerConfig:
    """Must match the node agents' --policy/--geometries/--device-config, or binds plan what agents refuse."""

    device_config: DeviceConfig = field(default_factory=default_device_config)
    policy: Policy = "hami"
    geometries: GeometryMode = "config"
    score: ScoreMode = "binpack"
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    lock_timeout: timedelta = LOCK_TIMEOUT
    """A node lock older than this is stale (crashed agent or binder) and is taken over."""
    lock_wait_s: float = 5.0
    """How long a bind waits for a node locked by another pod's allocation before it fails."""
    cache_ttl_s: float = 1.0
    """How old the filter's picture of nodes and pods may be (binds always re-read)."""
    catalogue: Catalogue = field(default_factory=default_catalogue)

    @property
    def names(self) -> ResourceNames:
        return resource_names(self.device_config)
