"""One node's MIG GPUs as the extender sees them: published GPUs, held instances, and reservations.

Which node agent runs the node decides how it is planned. A hami-mig node (its agent publishes
`hami-mig.io/gpus`) is planned with hami-mig's planner; a node without it is run by HAMi's own device
plugin and is planned as HAMi's scheduler does (`hami_node`).

On a hami-mig node the sources, all in the API, are: the node's `hami.io/node-nvidia-register` (which
GPUs, which model, mig mode, health); each live pod's `hami-mig.io/instances` (what the agent realized:
in use); and every device a live pod holds or was promised in HAMi's annotations without such a record,
replayed with the agent's planner so it is never promised twice: the devices left in
`hami.io/vgpu-devices-to-allocate` of pods in bind-phase `allocating`, the devices in
`hami.io/vgpu-devices-allocated` of pods whose instances another agent realized (HAMi's, before the node
moved to hami-mig: HAMi's getNodesUsage counts them too), and the requests of pending pods bound here by
the default scheduler (the agent's standalone mode). Free instances are not published; the planner may
destroy them anyway, so they do not matter here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hami_mig.agent.records import INSTANCES_ANNOTATION, decode_records
from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    HAMI_MIG_GPUS,
    MODE_MIG,
    NODE_REGISTER,
    BindPhase,
    PodDevices,
    decode_pod_devices,
)
from hami_mig.kube.register import TYPE_PREFIX, NodeDevice, decode_node_register
from hami_mig.kube.resources import ResourceNames, container_request, gpu_containers
from hami_mig.mig.catalogue import Catalogue, GpuModel
from hami_mig.mig.planner import apply_decision
from hami_mig.mig.state import GpuState, Instance
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.hami_node import HamiGpu, hami_gpus
from hami_mig.scheduler.planning import NodePlanner, Signature, signature


@dataclass(frozen=True)
class NodeView:
    """`gpus` hold every known-taken instance as in use; `problem` says why nothing can ever fit here."""

    name: str
    gpus: tuple[GpuState, ...] = ()
    signatures: tuple[Signature, ...] = ()
    problem: str = ""
    notes: tuple[str, ...] = ()
    used_slices: int = 0
    total_slices: int = 0
    slot_refs: frozenset[tuple[str, int, int]] = frozenset()
    """(GPU UUID, geometry, slot) named by live pods' allocations: a new pod gets another name."""
    hami: tuple[HamiGpu, ...] | None = None
    """Set on a node HAMi's device plugin runs: its GPUs with HAMi's usage, planned by `hami_node`."""
    gpu_types: Mapping[str, str] = field(default_factory=dict)
    """GPU UUID -> the register's `type`, what HAMi's nvidia.com/use-gputype filters match."""

    @property
    def used_fraction(self) -> float:
        return self.used_slices / self.total_slices if self.total_slices else 0.0


def find_model(type_name: str, catalogue: Catalogue) -> GpuModel | None:
    """The register's `type` is the NVML name with `NVIDIA-` prepended ("NVIDIA-NVIDIA A100-SXM4-40GB")."""
    model = catalogue.find(type_name)
    if model is None and type_name.startswith(TYPE_PREFIX):
        model = catalogue.find(type_name[len(TYPE_PREFIX):])
    return model


def hami_mig_node(node: o.Obj) -> bool:
    """Whether hami-mig's agent runs the node: it publishes `hami-mig.io/gpus`, HAMi's device plugin does not."""
    return HAMI_MIG_GPUS in o.annotations_of(node)


def _register(node: o.Obj) -> tuple[tuple[NodeDevice, ...], str]:
    text = o.annotations_of(node).get(NODE_REGISTER)
    if not text:
        return (), f"no {NODE_REGISTER} annotation: no node agent publishes GPUs on this node"
    try:
        return decode_node_register(text), ""
    except InputError as exc:
        return (), f"unreadable {NODE_REGISTER}: {exc}"


def published_gpus(node: o.Obj, catalogue: Catalogue) -> tuple[list[GpuState], list[str], str]:
    """(GPUs the planner may use, notes on skipped GPUs, problem when there are none)."""
    devices, problem = _register(node)
    if problem:
        return [], [], problem
    gpus: list[GpuState] = []
    notes: list[str] = []
    for dev in sorted(devices, key=lambda d: d.index):
        if dev.mode != MODE_MIG:
            notes.append(f"GPU {dev.index} is in {dev.mode} mode, not mig")
        elif not dev.health:
            notes.append(f"GPU {dev.index} is unhealthy")
        elif (model := find_model(dev.type, catalogue)) is None:
            notes.append(f"GPU {dev.index}: {dev.type!r} is no GPU model hami-mig knows")
        else:
            gpus.append(GpuState(dev.index, dev.id, model))
    if not gpus:
        why = "; ".join(notes) or f"{NODE_REGISTER} lists no GPU"
        return [], notes, f"no healthy MIG GPU of a known model ({why})"
    return gpus, notes, ""


def hami_agent_view(node: o.Obj, pods: Sequence[o.Obj], planner: NodePlanner) -> NodeView:
    """A node HAMi's device plugin runs: its GPUs with the usage HAMi's scheduler would count."""
    devices, problem = _register(node)
    if problem:
        return NodeView(o.name(node), problem=problem)
    gpus, notes = hami_gpus(devices, pods, planner.config.device_config)
    mig = [g for g in gpus if g.mode == MODE_MIG and g.health and g.geometries]
    if not mig:
        why = "; ".join(f"GPU {g.index}: " + (f"{g.mode} mode" if g.mode != MODE_MIG else "unhealthy" if not g.health
                        else f"no knownMigGeometries entry names {g.type!r}") for g in gpus) or "no GPU"
        return NodeView(o.name(node), problem=f"no healthy MIG GPU with configured geometries ({why})",
                        notes=tuple(notes))
    return NodeView(o.name(node), notes=tuple(notes), hami=gpus, used_slices=sum(g.usedmem for g in mig),
                    total_slices=sum(g.devmem for g in mig))


def _by_age(pods: Iterable[o.Obj]) -> list[o.Obj]:
    return sorted((p for p in pods if o.is_live(p)), key=lambda p: (o.created(p), o.key(p)))


def build_view(node: o.Obj, pods: Sequence[o.Obj], planner: NodePlanner, names: ResourceNames) -> NodeView:
    """The node's GPUs with every recorded instance and every reservation placed (pods: those on this node)."""
    if not hami_mig_node(node):
        return hami_agent_view(node, [p for p in pods if o.is_live(p)], planner)
    node_name = o.name(node)
    gpus, notes, problem = published_gpus(node, planner.config.catalogue)
    if problem:
        return NodeView(node_name, problem=problem, notes=tuple(notes))
    states: dict[str, GpuState] = {g.uuid: g for g in gpus}
    live = _by_age(pods)
    held: dict[str, dict[tuple[str, int], Instance]] = {u: {} for u in states}
    recorded: dict[str, set[int]] = {}
    for pod in live:
        try:
            records = decode_records(o.annotations_of(pod).get(INSTANCES_ANNOTATION))
        except InputError as exc:
            notes.append(f"pod {o.key(pod)}: {exc}")
            continue
        recorded[o.uid(pod)] = set(records)
        for recorded_here in records.values():
            for h in recorded_here:
                gpu = states.get(h.gpu_uuid)
                if gpu is None:
                    continue
                if not gpu.model.has_profile(h.profile):
                    notes.append(f"pod {o.key(pod)} holds {h.profile}, which {gpu.model.name} does not offer")
                    continue
                held[h.gpu_uuid][(h.profile, h.start)] = Instance(h.profile, h.start, True)
    for uuid, instances in held.items():
        states[uuid] = states[uuid].with_instances(instances.values())
    blocked: set[str] = set()
    for pod in live:
        _reserve(pod, node_name, states, planner, names, notes, recorded.get(o.uid(pod), set()), blocked)
    ordered = tuple(states[g.uuid] for g in gpus if g.uuid not in blocked)
    return NodeView(
        node_name, ordered, tuple(signature(g) for g in ordered), notes=tuple(notes),
        gpu_types={d.id: d.type for d in _register(node)[0]},
        used_slices=sum(len(g.occupied()) for g in ordered),
        total_slices=sum(g.model.memory_slices for g in ordered),
        slot_refs=frozenset(ref for pod in live for ref in _slot_refs(pod)),
    )


def _slot_refs(pod: o.Obj) -> list[tuple[str, int, int]]:
    ann = o.annotations_of(pod)
    if ann.get(BIND_PHASE) == BindPhase.FAILED:
        return []
    text = ann.get(DEVICES_ALLOCATED) or ann.get(DEVICES_TO_ALLOCATE) or ""
    try:
        devices = decode_pod_devices(text, DEVICES_ALLOCATED)
    except InputError:
        return []
    return [(ref.gpu_uuid, ref.geometry_index, ref.slot)
            for container in devices for dev in container if (ref := dev.mig_slot) is not None]


def _hami_devices(pod: o.Obj) -> tuple[PodDevices, bool]:
    """(the devices the pod's HAMi annotations give it, whether they are only promised: bind-phase allocating)."""
    ann = o.annotations_of(pod)
    phase = ann.get(BIND_PHASE)
    if phase == BindPhase.FAILED:
        return (), False
    if phase == BindPhase.ALLOCATING:
        return decode_pod_devices(ann.get(DEVICES_TO_ALLOCATE, "")), True
    held = ann.get(DEVICES_ALLOCATED) or ann.get(DEVICES_TO_ALLOCATE) or ""
    return decode_pod_devices(held, DEVICES_ALLOCATED), False


def _reserve(pod: o.Obj, node_name: str, states: dict[str, GpuState], planner: NodePlanner,
             names: ResourceNames, notes: list[str], recorded: set[int], blocked: set[str]) -> None:
    """Place what `pod` holds or was promised in HAMi's annotations but has no record of, container by container."""
    if o.annotations_of(pod).get(BIND_PHASE) is None and o.phase(pod) == "Pending" and o.node_name(pod) == node_name:
        # Bound here without HAMi's scheduler: the agent writes `vgpu-devices-allocated` as soon as the first
        # container is realized, so the pod's devices name only some containers; reserve every unrecorded one.
        _reserve_standalone(pod, states, planner, names, notes)
        return
    try:
        devices, promised = _hami_devices(pod)
    except InputError as exc:
        notes.append(f"pod {o.key(pod)}: {exc}")
        return
    if promised and o.deleting(pod):
        return  # an allocation that will not happen
    for index, container in enumerate(devices):
        if index in recorded:
            continue  # the agent realized it: its record placed it already
        for dev in container:
            ref_gpu = dev.uuid.split("[", 1)[0]
            gpu = states.get(ref_gpu)
            if gpu is None:
                if ref_gpu not in blocked:
                    notes.append(f"pod {o.key(pod)} reserved {dev.uuid}, a GPU this node does not publish")
                continue
            try:
                decision = planner.replay(gpu, dev.uuid, dev.memory_mib)
            except InputError as exc:
                notes.append(f"pod {o.key(pod)}: {exc}")
                decision = None
            if decision is None or not decision.fits:
                why = decision.reason if decision is not None else "unreadable device"
                if promised:
                    notes.append(f"pod {o.key(pod)}: reserved {dev.uuid} cannot be realized: {why}")
                else:  # held by a pod whose instance we cannot place: never offer this GPU
                    notes.append(f"pod {o.key(pod)} holds {dev.uuid} without a hami-mig record, and it does not "
                                 f"fit beside the other holders ({why}): GPU {gpu.index} is left out")
                    blocked.add(ref_gpu)
                    del states[ref_gpu]
                continue
            states[ref_gpu] = apply_decision([gpu], decision)[0]


def _reserve_standalone(pod: o.Obj, states: dict[str, GpuState], planner: NodePlanner,
                        names: ResourceNames, notes: list[str]) -> None:
    """A pod the default scheduler bound here: the agent will plan its GPU containers as it admits them."""
    try:
        done = decode_records(o.annotations_of(pod).get(INSTANCES_ANNOTATION))
        pending = [i for i in gpu_containers(pod, names) if i not in done]
        requests = [r for r in (container_request(pod, i, names) for i in pending) if r is not None]
    except InputError:
        return  # the agent refuses it at admission; nothing to reserve
    for request in requests:
        current = list(states.values())
        decision = planner.decide(current, request)
        if not decision.fits:
            notes.append(f"pending pod {o.key(pod)} cannot be placed: {decision.reason}")
            return
        for after in apply_decision(current, decision):
            states[after.uuid] = after
