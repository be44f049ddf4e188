"""Can a pod run on a node now, and with which instances: the filter's question and the bind's plan.

The bind runs `mig.planner.decide` on the whole node, container after container, each seeing the
instances the previous ones took. The filter asks the same of each GPU through the planner's memo
(`planning.NodePlanner.on_gpu`) and combines the answers as `decide` does, which makes 1,000 nodes
a few milliseconds; tests check the two agree, verdicts and reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from hami_mig.errors import HamiMigError, InputError
from hami_mig.kube.annotations import MODE_MIG, VGPU_MODE, ContainerDevice, PodDevices
from hami_mig.kube.resources import ResourceNames, container_request, gpu_containers, pod_containers, pod_vgpu_mode
from hami_mig.mig.plan import Allocation, Decision
from hami_mig.mig.planner import Candidate, apply_decision, core_share, ranks_gpus
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState
from hami_mig.scheduler import hami_node
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.gpu_filters import gpu_allowed, gpu_filter
from hami_mig.scheduler.nodeview import NodeView
from hami_mig.scheduler.planning import GpuAnswer, NodePlanner, Signature, signature, take

ContainerRequests = tuple[tuple[int, Request], ...]
"""(container index in HAMi's order, its request) for each GPU container of a pod."""


class PodRequestError(InputError):
    """The pod's GPU request can never be served (bad value, or a vgpu-mode without mig)."""


class NoFreeSlotName(HamiMigError):
    """Every slot of the planned profile in that geometry is named by a live pod: the plan is not written."""


def pod_requests(pod: o.Obj, names: ResourceNames) -> ContainerRequests:
    """The pod's GPU containers and their requests; PodRequestError names the bad field."""
    mode = pod_vgpu_mode(pod)
    if mode is not None and MODE_MIG not in mode:
        raise PodRequestError(VGPU_MODE, mode, "hami-mig nodes serve mode 'mig'; the pod must allow it")
    try:
        return tuple((i, r) for i in gpu_containers(pod, names) if (r := container_request(pod, i, names)))
    except InputError as exc:
        raise PodRequestError(exc.field, exc.value, exc.allowed) from None


@dataclass(frozen=True)
class NodeFit:
    """The filter's answer for one node; `permanent`: it would not fit even on idle GPUs."""

    node: str
    fits: bool
    reason: str = ""
    permanent: bool = False


def _plural(n: int) -> str:
    return "s" if n != 1 else ""


class Query:
    """One pod's GPU containers, prepared once per filter call and asked of every node."""

    def __init__(self, requests: ContainerRequests, planner: NodePlanner, gpu_policy: str = "spread",
                 gpu_filter: Mapping[str, str] | None = None) -> None:
        self.requests = requests
        self.planner = planner
        self.gpu_policy = gpu_policy  # HAMi's GPU order, on nodes its device plugin runs
        self.gpu_filter = dict(gpu_filter or {})  # HAMi's use-/nouse-gputype and -gpuuuid annotations
        self.steps: list[tuple[int, Request, Request, dict[tuple[int, str, Signature], GpuAnswer]]] = []
        for index, request in requests:
            one = replace(request, count=1) if request.count != 1 else request
            self.steps.append((index, request, one, planner.table(one)))
        self.prefix = len(requests) > 1
        self._idle: dict[tuple[tuple[int, str], ...], bool] = {}

    def fits_idle(self, view: NodeView) -> bool:
        """Whether the pod fits the node's GPUs with nothing in use (else: no preemption can help)."""
        shape = tuple((g.index, g.model.name) for g in view.gpus)
        known = self._idle.get(shape)
        if known is None:
            known = self._idle[shape] = walk([g.with_instances(()) for g in view.gpus], [() for _ in view.gpus],
                                             self)[0]
        return known


def fit(view: NodeView, requests: ContainerRequests | Query, planner: NodePlanner) -> NodeFit:
    query = requests if isinstance(requests, Query) else Query(requests, planner)
    if view.problem:
        return NodeFit(view.name, False, view.problem, permanent=True)
    view = allowed_view(view, query.gpu_filter)
    if view.problem:
        return NodeFit(view.name, False, view.problem, permanent=True)
    if view.hami is not None:
        result = hami_node.plan(view.hami, query.requests, query.gpu_policy)
        if result.fits:
            return NodeFit(view.name, True)
        idle = hami_node.plan([g.idle() for g in view.hami], query.requests, query.gpu_policy)
        return NodeFit(view.name, False, result.reason, permanent=not idle.fits)
    fits, reason = walk(list(view.gpus), list(view.signatures), query)
    if fits:
        return NodeFit(view.name, True)
    return NodeFit(view.name, False, reason, permanent=not query.fits_idle(view))


def allowed_view(view: NodeView, annotations: Mapping[str, str]) -> NodeView:
    """The view with only the GPUs the pod's HAMi GPU filter annotations allow (the view itself without any)."""
    if not annotations:
        return view
    if view.hami is not None:
        hami = tuple(g for g in view.hami if gpu_allowed(annotations, g.uuid, g.type))
        if not hami:
            return replace(view, problem=_filtered_out(annotations))
        return replace(view, hami=hami)
    keep = [i for i, g in enumerate(view.gpus) if gpu_allowed(annotations, g.uuid, view.gpu_types.get(g.uuid, ""))]
    if not keep:
        return replace(view, problem=_filtered_out(annotations))
    return replace(view, gpus=tuple(view.gpus[i] for i in keep), signatures=tuple(view.signatures[i] for i in keep))


def _filtered_out(annotations: Mapping[str, str]) -> str:
    given = ", ".join(f"{k}={v!r}" for k, v in annotations.items())
    return f"no GPU of this node passes the pod's {given}"


def walk(gpus: list[GpuState], sigs: list[Signature], query: Query) -> tuple[bool, str]:
    """decide() container after container, GPU by GPU through the memo: (fits, decide's reason).

    decide() fits when at least `count` GPUs have a candidate; it takes the best by Candidate.score
    (`ranks_gpus`) or else the first ones in GPU order, which later containers then see in use.
    """
    n = len(gpus)
    planner = query.planner
    steps = query.steps
    for position, (index, request, one, table) in enumerate(steps):
        where = f"container {index}: " if query.prefix else ""
        count = request.count
        if count > n:
            return False, (f"{where}asks for {count} instances on {count} distinct GPUs; "
                           f"the node has {n} GPU{_plural(n)}")
        last = position == len(steps) - 1
        hits: list[tuple[int, Candidate]] = []
        for i in range(n):
            gpu = gpus[i]
            answer = table.get((gpu.index, gpu.model.name, sigs[i]))
            if answer is None:
                answer = planner.on_gpu(gpu, sigs[i], one)
            if answer.best is not None:
                hits.append((i, answer.best))
                if last and len(hits) >= count:
                    return True, ""
        if len(hits) < count:
            whys = [planner.on_gpu(gpus[i], sigs[i], one).why for i in range(n)
                    if i not in {h[0] for h in hits}]
            got = f"only {len(hits)} of {count} GPUs can host it; " if count > 1 and hits else ""
            return False, f"{where}no MIG instance for {request.describe()}: {got}" + "; ".join(whys)
        if ranks_gpus(planner.config.policy, planner.config.geometries):
            hits.sort(key=lambda h: h[1].score())
        for i, pick in hits[:count]:
            gpus[i] = take(gpus[i], pick)
            sigs[i] = signature(gpus[i])
    return True, ""


@dataclass(frozen=True)
class PodPlan:
    """The bind's plan: a Decision per GPU container, in order, each planned after the previous."""

    fits: bool
    decisions: tuple[tuple[int, Decision], ...] = ()
    reason: str = ""
    gpus_after: tuple[GpuState, ...] = ()


def plan_pod(view: NodeView, requests: ContainerRequests, planner: NodePlanner) -> PodPlan:
    if view.problem:
        return PodPlan(False, reason=view.problem)
    gpus = list(view.gpus)
    out: list[tuple[int, Decision]] = []
    for index, request in requests:
        decision = planner.decide(gpus, request)
        if not decision.fits:
            where = f"container {index}: " if len(requests) > 1 else ""
            return PodPlan(False, reason=where + decision.reason)
        gpus = apply_decision(gpus, decision)
        out.append((index, decision))
    return PodPlan(True, tuple(out), gpus_after=tuple(gpus))


def _device(a: Allocation, gpu: GpuState, planner: NodePlanner, taken: set[tuple[str, int, int]]) -> ContainerDevice:
    """HAMi's device entry: the geometry slot in config mode, the bare GPU UUID in `any` mode.

    The planner names the first free slot of the profile counting in-use instances by profile, which
    can repeat the name another live pod holds (its instance sits elsewhere). Slots of one profile in
    one geometry are interchangeable for the agent (`plan_slot` realizes the profile), so the entry
    takes the lowest such slot no live pod names: two pods never carry the same `GPU-x[g-s]`, and when
    every such name is taken, nothing is written (NoFreeSlotName).
    """
    profile = gpu.model.profile(a.profile)
    cores = core_share(profile, gpu.model)
    if a.geometry_index is None or a.slot is None:
        return ContainerDevice(uuid=a.gpu_uuid, memory_mib=a.memory_mib, cores=cores)
    slot = a.slot
    geo = next((g for g in planner.geometries(gpu).geometries if g.index == a.geometry_index), None)
    if geo is not None:
        if (a.gpu_uuid, a.geometry_index, a.slot) in taken:
            free = next((s.index for s in geo.slots if s.profile.name == a.profile
                         and (a.gpu_uuid, a.geometry_index, s.index) not in taken), None)
            if free is None:
                raise NoFreeSlotName(f"every {a.profile} slot of geometry {a.geometry_index} on GPU {gpu.index} is "
                                     "named by a live pod")
            slot = free
        if geo.slots[slot].core:
            cores = geo.slots[slot].core
    taken.add((a.gpu_uuid, a.geometry_index, slot))
    return ContainerDevice(uuid=f"{a.gpu_uuid}[{a.geometry_index}-{slot}]", memory_mib=a.memory_mib, cores=cores)


def pod_devices(pod: o.Obj, plan: PodPlan, view: NodeView, planner: NodePlanner) -> PodDevices:
    """`hami.io/vgpu-devices-to-allocate` for the plan: one entry per container, init containers first."""
    by_uuid = {g.uuid: g for g in view.gpus}
    chosen = dict(plan.decisions)
    taken = set(view.slot_refs)
    entries: list[tuple[ContainerDevice, ...]] = []
    for container in pod_containers(pod):
        decision = chosen.get(container.index)
        if decision is None:
            entries.append(())
            continue
        entries.append(tuple(_device(a, by_uuid[a.gpu_uuid], planner, taken) for a in decision.allocations))
    return tuple(entries)


def bind_devices(pod: o.Obj, view: NodeView, requests: ContainerRequests, planner: NodePlanner) -> PodDevices:
    """What the bind writes for the pod on this node, planned by the node's kind; NoFitError says why not."""
    if view.problem:
        raise NoFitError(view.problem)
    view = allowed_view(view, gpu_filter(o.annotations_of(pod)))
    if view.problem:
        raise NoFitError(view.problem)
    if view.hami is not None:
        result = hami_node.plan(view.hami, requests, hami_node.pod_policy(pod))
        if not result.fits or result.devices is None:
            raise NoFitError(result.reason)
        return tuple(result.devices.get(c.index, ()) for c in pod_containers(pod))
    plan = plan_pod(view, requests, planner)
    if not plan.fits:
        raise NoFitError(plan.reason)
    try:
        return pod_devices(pod, plan, view, planner)
    except NoFreeSlotName as exc:
        raise NoFitError(str(exc)) from None


class NoFitError(HamiMigError):
    """The pod does not fit the node (any more); the message says why."""


def fit_all(views: Sequence[NodeView], requests: ContainerRequests, planner: NodePlanner) -> list[NodeFit]:
    return [fit(v, requests, planner) for v in views]
