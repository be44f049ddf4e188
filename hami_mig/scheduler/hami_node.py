"""A node whose GPUs HAMi's own device plugin runs, planned as HAMi v2.9's scheduler plans it.

HAMi's device plugin realizes a slot `GPU-<uuid>[<geometry>-<slot>]` by reconfiguring the GPU to that
geometry (nvidia-mig-parted) and handing out the slot's position, so on such a node the scheduler must
keep the rule HAMi's scheduler keeps (pkg/device/nvidia/device.go at v2.9.0): while any slot of a GPU is
held, only free slots of the SAME geometry may be given (`AddResourceUsage`, `CustomFilterRule`); an idle
GPU takes the first configured geometry with an entry of at least the requested memory. Usage is rebuilt
from the pods as `getNodesUsage` (pkg/scheduler/scheduler.go) does: every live pod's
`hami.io/vgpu-devices-allocated` (else `-to-allocate`) counts, slot by slot. Geometries are matched to the
GPU as HAMi's device plugin matches them (model string as a substring of the type, first entry), so slot
numbers mean the same to both. Where this differs from HAMi on purpose (slot numbering when a geometry's
earlier entry has count > 1, whole-GPU requests, N instances on N distinct GPUs), docs/migrating-from-hami.md
says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    MODE_HAMI_CORE,
    MODE_MIG,
    BindPhase,
    ContainerDevice,
    decode_pod_devices,
)
from hami_mig.kube.register import NodeDevice
from hami_mig.mig.geometry import DeviceConfig, Geometry, GeometryEntry
from hami_mig.mig.request import Request
from hami_mig.scheduler import objects as o

GPU_POLICY_ANNOTATION = "hami.io/gpu-scheduler-policy"
"""HAMi's per-pod GPU ordering (binpack | spread); its scheduler's default is spread."""


@dataclass(frozen=True)
class HamiGpu:
    """One GPU as HAMi's `DeviceUsage` holds it: register values, usage summed from the pods, slots held."""

    index: int
    uuid: str
    type: str
    devmem: int
    devcore: int
    count: int
    numa: int
    health: bool
    mode: str
    geometries: tuple[Geometry, ...]
    used: int = 0
    usedmem: int = 0
    usedcores: int = 0
    geometry: int | None = None
    """The geometry of the held slots (HAMi's MigUsage.Index); None while no slot is held."""
    in_use: frozenset[int] = frozenset()
    problem: str = ""
    """Why nothing may be placed here (slots of two geometries held, a slot the geometry lacks ...)."""

    @property
    def slots(self) -> tuple[GeometryEntry, ...]:
        return self.geometries[self.geometry].slots if self.geometry is not None else ()

    def idle(self) -> HamiGpu:
        return replace(self, used=0, usedmem=0, usedcores=0, geometry=None, in_use=frozenset(), problem="")


@dataclass(frozen=True)
class Pick:
    """The slot one instance gets: what HAMi's AddResourceUsage writes in the pod's devices."""

    gpu: HamiGpu
    geometry: int
    slot: int
    entry: GeometryEntry

    def device(self) -> ContainerDevice:
        return ContainerDevice(uuid=f"{self.gpu.uuid}[{self.geometry}-{self.slot}]", memory_mib=self.entry.memory,
                               cores=self.entry.core)


def hami_geometries(type_name: str, config: DeviceConfig) -> tuple[Geometry, ...]:
    """GetNodeDevices / containsModel (v2.9.0): the first knownMigGeometries entry one of whose models is a
    substring of the GPU's type."""
    for rule in config.rules:
        if any(model in type_name for model in rule.models):
            return rule.geometries
    return ()


def hami_gpus(devices: Sequence[NodeDevice], pods: Iterable[o.Obj], config: DeviceConfig) -> tuple[
        tuple[HamiGpu, ...], list[str]]:
    """The node's GPUs with the usage HAMi's getNodesUsage rebuilds from the live pods (`pods`: those on it)."""
    gpus = {d.id: HamiGpu(d.index, d.id, d.type, d.devmem, d.devcore, d.count, d.numa, d.health, d.mode,
                          hami_geometries(d.type, config) if d.mode == MODE_MIG else ())
            for d in devices}
    notes: list[str] = []
    for pod in pods:
        ann = o.annotations_of(pod)
        if not o.is_live(pod) or ann.get(BIND_PHASE) == BindPhase.FAILED:
            continue
        text = ann.get(DEVICES_ALLOCATED) or ann.get(DEVICES_TO_ALLOCATE) or ""
        try:
            containers = decode_pod_devices(text, DEVICES_ALLOCATED)
        except InputError as exc:
            notes.append(f"pod {o.key(pod)}: {exc}")
            continue
        for dev in (d for container in containers for d in container):
            gpu = gpus.get(dev.uuid.split("[", 1)[0])
            if gpu is not None:
                gpus[gpu.uuid] = _count(gpu, dev, o.key(pod), notes)
    return tuple(gpus.values()), notes


def _count(gpu: HamiGpu, dev: ContainerDevice, who: str, notes: list[str]) -> HamiGpu:
    gpu = replace(gpu, used=gpu.used + 1, usedmem=gpu.usedmem + dev.memory_mib, usedcores=gpu.usedcores + dev.cores)
    ref = dev.mig_slot
    if ref is None:
        return gpu
    problem = ""
    if gpu.mode == MODE_HAMI_CORE:
        problem = f"pod {who} holds MIG slot {dev.uuid} on a hami-core GPU"
    elif not 0 <= ref.geometry_index < len(gpu.geometries):
        problem = f"pod {who} holds {dev.uuid}, but the GPU's type {gpu.type!r} has no geometry {ref.geometry_index}"
    elif gpu.geometry is not None and gpu.geometry != ref.geometry_index:
        problem = (f"pods hold slots of geometries {gpu.geometry} and {ref.geometry_index} at once "
                   f"({who}: {dev.uuid})")
    elif not 0 <= ref.slot < len(gpu.geometries[ref.geometry_index].slots):
        problem = f"pod {who} holds {dev.uuid}, a slot geometry {ref.geometry_index} does not have"
    if problem:
        notes.append(f"GPU {gpu.index}: {problem}; nothing more is placed on it")
        return replace(gpu, problem=gpu.problem or problem)
    if ref.slot in gpu.in_use:
        notes.append(f"GPU {gpu.index}: slot {dev.uuid} is named by two pods (pod {who})")
    return replace(gpu, geometry=ref.geometry_index, in_use=gpu.in_use | {ref.slot})


def memreq(gpu: HamiGpu, request: Request) -> int:
    """Fit's `memreq`: gpumem, or the percentage of the registered memory. A whole-GPU request is the largest
    configured entry (HAMi asks for all of devmem, which no slot reaches, and writes a bare GPU UUID)."""
    if request.memory_mib is not None:
        return request.memory_mib
    if request.memory_percent is not None:
        return gpu.devmem * request.memory_percent // 100
    return max((e.memory for g in gpu.geometries for e in g.entries), default=gpu.devmem)


def pick(gpu: HamiGpu, request: Request) -> Pick | str:
    """Fit's checks on one GPU, then the slot AddResourceUsage takes; a string says why none."""
    cores = min(request.cores or 0, 100)
    need = memreq(gpu, request)
    if gpu.problem:
        return gpu.problem
    if not gpu.health:
        return "unhealthy"
    if gpu.mode != MODE_MIG:
        return f"in {gpu.mode} mode (hami-mig's scheduler plans MIG GPUs only)"
    if gpu.count <= gpu.used:
        return f"all {gpu.count} shares in use"
    if gpu.devmem - gpu.usedmem < need:
        return f"{gpu.devmem - gpu.usedmem} MiB unallocated, {need} MiB asked"
    if gpu.devcore - gpu.usedcores < cores:
        return f"{gpu.devcore - gpu.usedcores}% cores unallocated, {cores}% asked"
    if gpu.devcore == 100 and cores == 100 and gpu.used > 0:
        return "100% cores asks for the GPU alone, and it is in use"
    if gpu.devcore != 0 and gpu.usedcores == gpu.devcore and cores == 0:
        return "all cores allocated"
    if gpu.geometry is None:
        for g, geometry in enumerate(gpu.geometries):
            for idx, entry in enumerate(geometry.entries):
                if entry.memory >= need:
                    return Pick(gpu, g, sum(e.count for e in geometry.entries[:idx]), entry)
        if not gpu.geometries:
            return f"no knownMigGeometries entry names type {gpu.type!r}"
        return f"no configured geometry has an instance of {need} MiB"
    for slot, entry in enumerate(gpu.slots):
        if slot not in gpu.in_use and entry.memory >= need:
            return Pick(gpu, gpu.geometry, slot, entry)
    return (f"geometry {gpu.geometry} is held (slots {', '.join(map(str, sorted(gpu.in_use)))} in use) and has no "
            f"free slot of {need} MiB; HAMi's device plugin changes a GPU's geometry only when it is idle")


def take(chosen: Pick) -> HamiGpu:
    gpu = chosen.gpu
    return replace(gpu, used=gpu.used + 1, usedmem=gpu.usedmem + chosen.entry.memory,
                   usedcores=gpu.usedcores + chosen.entry.core, geometry=chosen.geometry,
                   in_use=gpu.in_use | {chosen.slot})


def _score(gpu: HamiGpu, request: Request) -> float:
    """ComputeScore (pkg/scheduler/policy/gpu_policy.go, v2.9.0), without its constant weight."""
    if gpu.count == 0 or gpu.devcore == 0 or gpu.devmem == 0:
        return 0.0
    mem = request.memory_mib if request.memory_mib is not None else gpu.devmem * (request.memory_percent or 100) // 100
    return ((1 + gpu.used) / gpu.count + ((request.cores or 0) + gpu.usedcores) / gpu.devcore
            + (mem + gpu.usedmem) / gpu.devmem)


def _order(gpus: list[HamiGpu], request: Request, policy: str) -> list[HamiGpu]:
    """The order Fit tries GPUs in: DeviceUsageList sorted (stable for a node's few GPUs), walked from its end."""
    if policy == "binpack":
        ordered = sorted(gpus, key=lambda g: (-g.numa, _score(g, request)))
    else:
        ordered = sorted(gpus, key=lambda g: (g.numa, -_score(g, request)))
    return ordered[::-1]


@dataclass(frozen=True)
class HamiPlan:
    fits: bool
    devices: Mapping[int, tuple[ContainerDevice, ...]] | None = None
    reason: str = ""


def plan(gpus: Sequence[HamiGpu], requests: Sequence[tuple[int, Request]], policy: str = "spread") -> HamiPlan:
    """Every GPU container in turn, each seeing the slots the previous ones took (calcScore / fitInDevices)."""
    current = list(gpus)
    chosen: dict[int, tuple[ContainerDevice, ...]] = {}
    for index, request in requests:
        where = f"container {index}: " if len(requests) > 1 else ""
        if request.count > len(current):
            return HamiPlan(False, reason=f"{where}asks for {request.count} instances on {request.count} distinct "
                                          f"GPUs; the node has {len(current)}")
        picks: list[Pick] = []
        whys: list[str] = []
        for gpu in _order(current, request, policy):
            if len(picks) == request.count:
                break
            got = pick(gpu, request)
            if isinstance(got, Pick):
                picks.append(got)
            else:
                whys.append(f"GPU {gpu.index}: {got}")
        if len(picks) < request.count:
            got_some = f"only {len(picks)} of {request.count} GPUs can host it; " if picks else ""
            return HamiPlan(False, reason=f"{where}no MIG slot for {request.describe()}: {got_some}"
                                          + "; ".join(sorted(whys)))
        for p in picks:
            current[current.index(p.gpu)] = take(p)
        chosen[index] = tuple(p.device() for p in picks)
    return HamiPlan(True, chosen)


def pod_policy(pod: o.Obj) -> str:
    value = o.annotations_of(pod).get(GPU_POLICY_ANNOTATION, "")
    return "binpack" if value == "binpack" else "spread"
