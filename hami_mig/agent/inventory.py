"""The node's GPUs as the agent manages them: NVML's view filtered by the node config, with holders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import HeldInstance
from hami_mig.agent.snapshot import Holder
from hami_mig.kube.annotations import MODE_MIG
from hami_mig.mig.catalogue import Catalogue
from hami_mig.mig.geometry import GpuGeometries, resolve_for_gpu
from hami_mig.mig.state import GpuState
from hami_mig.nvml import GpuDevice


@dataclass(frozen=True)
class Inventory:
    """One consistent reading: every GPU, the managed ones as planner states, and who holds what."""

    devices: tuple[GpuDevice, ...]
    states: tuple[GpuState, ...]
    held: Mapping[str, tuple[Holder, HeldInstance]]
    unmanaged: Mapping[int, str]  # GPU index -> why it is left alone

    def state_by_uuid(self, uuid: str) -> GpuState | None:
        return next((s for s in self.states if s.uuid == uuid), None)


def unmanaged_reason(dev: GpuDevice, config: AgentConfig, step_back: str | None = None,
                     note: str = "") -> str | None:
    """Why hami-mig leaves this GPU alone, or None when it manages it. `step_back`: the GPU Operator owns
    the node; `note`: what MIG-mode management is doing about this GPU (waiting, pending reset ...)."""
    if config.filtered(dev.uuid, dev.index):
        return "listed in the node config's filterdevices"
    if step_back:
        return step_back
    mode, explicit = config.mode_of(dev.uuid, dev.index)
    if mode != MODE_MIG:
        if explicit:
            why = f"the node config's gpus list sets GPU {dev.index} to {mode!r}, not 'mig'"
            return f"{why}; {note}" if note else why
        return f"node operating mode is {config.mode!r}, not 'mig'"
    if dev.mig_mode != "enabled" or dev.model is None:
        why = dev.message or f"MIG mode is {dev.mig_mode}"
        return f"{why}; {note}" if note else why
    return None


def read_inventory(
    devices: Sequence[GpuDevice], held: Mapping[str, tuple[Holder, HeldInstance]], config: AgentConfig, *,
    step_back: str | None = None, notes: Mapping[str, str] | None = None, protect_all: bool = False,
) -> Inventory:
    """`protect_all`: some pod's record is unreadable, so no instance may be reused or destroyed."""
    states: list[GpuState] = []
    unmanaged: dict[int, str] = {}
    for dev in devices:
        why = unmanaged_reason(dev, config, step_back, (notes or {}).get(dev.uuid, ""))
        if why is not None:
            unmanaged[dev.index] = why
            continue
        protected = set(held) | ({u for hw in dev.instances for u in hw.uuids()} if protect_all else set())
        states.append(dev.to_gpu_state(protected))
    return Inventory(tuple(devices), tuple(states), held, unmanaged)


class GeometryCache:
    """Resolved geometries per GPU model table; the config and tables do not change while running."""

    def __init__(self, config: AgentConfig, catalogue: Catalogue) -> None:
        self._config = config
        self._catalogue = catalogue
        self._cache: dict[int, tuple[object, GpuGeometries]] = {}

    def __call__(self, gpu: GpuState) -> GpuGeometries:
        hit = self._cache.get(id(gpu.model))
        if hit is not None and hit[0] is gpu.model:
            return hit[1]
        geos = resolve_for_gpu(self._config.device_config, gpu.model, self._catalogue)
        self._cache[id(gpu.model)] = (gpu.model, geos)
        return geos
