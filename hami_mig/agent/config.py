"""The agent's settings, gathered from flags and the two HAMi ConfigMaps."""

from __future__ import annotations

from dataclasses import dataclass, field

from hami_mig.kube.annotations import MODE_MIG
from hami_mig.kube.nodeconfig import GpuMode, gpu_mode
from hami_mig.kube.register import RegisterFormat
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
    nvml_resync_interval_s: float = 30.0  # full NVML re-read to notice what others changed; 0: never
    idle_release_s: float = 0.0  # 0: keep free instances until a reshape needs the room
    state_dir: str | None = None  # the allocate journal (crash recovery); None: off
    events: bool = True
    gpu_modes: tuple[GpuMode, ...] = ()  # config.json `gpus`: per-GPU operating modes (hami-mig extension)
    cdi_dir: str = "/var/run/cdi"
    cdi_base_spec: str = ""  # nvidia-ctk's generated spec: its driver-library mounts and hooks go into ours
    mig_minors_path: str = "/proc/driver/nvidia-caps/mig-minors"
    proc_root: str = "/proc"  # process names, open device files, /proc/devices
    manage_mig_mode: bool = False  # enable/disable MIG on idle GPUs to match the node config; never resets
    ignore_gpu_operator: bool = False  # manage MIG even where the GPU Operator's MIG manager labels the node
    in_use_backoff_s: tuple[float, ...] = (0.2, 0.5, 1.0)  # waits before re-planning after NVML IN_USE
    register_format: RegisterFormat = "json"  # hami.io/node-nvidia-register: json (HAMi v2.8+) or legacy (v2.5-v2.7)

    def filtered(self, uuid: str, index: int) -> bool:
        return uuid in self.filter_uuids or index in self.filter_indices

    def mode_of(self, uuid: str, index: int) -> tuple[str, bool]:
        """(operating mode of one GPU, whether config.json's `gpus` names it), the node's mode by default."""
        return gpu_mode(self.gpu_modes, self.mode, uuid, index)
