"""One kubelet Allocate: find the pod -> plan -> apply -> record -> answer, undoing on any failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hami_mig.agent.cdi import CdiError
from hami_mig.agent.config import AgentConfig
from hami_mig.agent.inventory import GeometryCache, Inventory
from hami_mig.agent.journal import Journal
from hami_mig.agent.pods import NoTargetError, Target, find_target
from hami_mig.agent.records import INSTANCES_ANNOTATION, HeldInstance, annotations_of, encode_records, pod_records
from hami_mig.agent.response import container_allocation
from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    ContainerDevice,
    decode_pod_devices,
    encode_pod_devices,
    erase_next_container,
    next_pending_container,
)
from hami_mig.kube.errors import ApiConflict, ApiError, ApiForbidden
from hami_mig.kube.resources import check_vgpu_mode, container_request, pod_containers
from hami_mig.mig.explain import failure_reason
from hami_mig.mig.plan import Decision, Operation
from hami_mig.mig.planner import decide, plan_slot
from hami_mig.mig.request import Request
from hami_mig.nvml import ApplyError, ApplyResult, HardwareError
from hami_mig.nvml.errors import IN_USE
from hami_mig.plugin import (
    AllocationError,
    ContainerAllocation,
    FailedPreconditionError,
    InvalidRequestError,
    ResourceExhaustedError,
    UnavailableError,
)

log = logging.getLogger(__name__)
CHECK_ROUNDS = 3  # plans made again while the GPUs they touch turn out changed, before giving up


@dataclass(frozen=True)
class Outcome:
    """What an Allocate did, for metrics, Events and the demo."""

    target: Target
    decision: Decision
    mig_uuids: tuple[str, ...]
    applied: ApplyResult | None
    seconds: float
    request: Request | None = None

    @property
    def reshaped(self) -> bool:
        return bool(self.decision.operations)


class Ports:
    """The outside world the allocation flow needs; the agent wires real adapters in."""

    def __init__(self, list_pods: Callable[[], list[Any]], inventory: Callable[[list[Any]], Inventory],
                 apply: Callable[[Sequence[Operation], Sequence[str]], ApplyResult],
                 patch_pod: Callable[[Any, dict[str, str | None]], None],
                 prepare: Callable[[Sequence[str]], None] | None = None, journal: Journal | None = None,
                 verify: Callable[[list[Any], Decision], Inventory | None] | None = None,
                 outside_change: Callable[[], bool] | None = None) -> None:
        self.list_pods = list_pods
        self.inventory = inventory
        self.apply = apply
        self.patch_pod = patch_pod
        self.prepare = prepare or (lambda _uuids: None)  # e.g. CDI specs on disk before anything names them
        self.journal = journal or Journal(None)  # what this call creates, until the pod records it
        # The inventory is the agent's picture: `verify` checks the GPUs a plan touches and returns a newer
        # picture when they changed; `outside_change` says a failed change found a GPU changed by others.
        self.verify = verify or (lambda _pods, _decision: None)
        self.outside_change = outside_change or (lambda: False)


def _request_for(target: Target, config: AgentConfig) -> Request:
    pod = target.pod
    try:
        check_vgpu_mode(pod, config.mode)
        request = container_request(pod, target.container, config.names)
    except InputError as exc:
        raise InvalidRequestError(f"pod {target.key}: {exc}") from None
    if request is None:
        raise InvalidRequestError(f"pod {target.key}: container {target.container} requests no GPU resources")
    return request


def _plan_hami(target: Target, inv: Inventory, config: AgentConfig, geos: GeometryCache) -> Decision:
    """Realize exactly what the HAMi scheduler chose: a geometry slot, or one instance on a named GPU."""
    parts: list[Decision] = []
    for dev in target.chosen:
        ref = dev.mig_slot
        gpu_uuid = ref.gpu_uuid if ref is not None else dev.uuid
        gpu = inv.state_by_uuid(gpu_uuid)
        if gpu is None:
            why = next((r for i, r in inv.unmanaged.items()
                        if any(d.index == i and d.uuid == gpu_uuid for d in inv.devices)), "not on this node")
            raise FailedPreconditionError(f"pod {target.key}: the scheduler chose GPU {gpu_uuid}, which hami-mig "
                                          f"does not manage ({why})")
        if ref is not None:
            d = plan_slot(gpu, geos(gpu), ref.geometry_index, ref.slot)
        else:
            d = decide([gpu], Request(memory_mib=max(dev.memory_mib, 1)), geos, policy=config.policy,
                       mode=config.geometries)
        if not d.fits:
            raise ResourceExhaustedError(f"pod {target.key}: {d.reason}")
        parts.append(d)
    return Decision(True, tuple(a for d in parts for a in d.allocations),
                    tuple(o for d in parts for o in d.operations), notes=tuple(n for d in parts for n in d.notes))


def _complete_reuse(decision: Decision) -> Decision:
    """A free GPU instance without its compute instance (left by an interrupted create or destroy) has no
    MIG device yet: "reusing" it means creating the CI, which the backend's idempotent create does."""
    broken = [a for a in decision.allocations if a.reuse and not a.uuid]
    if not broken:
        return decision
    allocations = tuple(replace(a, reuse=False) if a in broken else a for a in decision.allocations)
    creates = tuple(Operation("create", a.gpu_index, a.profile, a.start, a.gpu_uuid) for a in broken)
    return replace(decision, allocations=allocations, operations=(*decision.operations, *creates))


def plan(target: Target, inv: Inventory, config: AgentConfig, geos: GeometryCache) -> tuple[Request, Decision]:
    request = _request_for(target, config)
    if target.mode == "hami" and target.chosen:
        return request, _complete_reuse(_plan_hami(target, inv, config, geos))
    if not inv.states:
        reasons = "; ".join(f"GPU {i}: {r}" for i, r in sorted(inv.unmanaged.items())) or "no GPUs found"
        raise FailedPreconditionError(f"pod {target.key}: this node has no GPU that hami-mig manages ({reasons})")
    decision = decide(inv.states, request, geos, policy=config.policy, mode=config.geometries)
    if not decision.fits:
        why = failure_reason(inv.states, request, geos, config.geometries)  # what would have been needed
        raise ResourceExhaustedError(f"pod {target.key}: {why}")
    return request, _complete_reuse(decision)


def _mig_uuids(decision: Decision, applied: ApplyResult | None) -> tuple[str, ...]:
    created = {(s.op.gpu_index, s.op.profile, s.op.start): s.instance for s in (applied.created if applied else ())}
    out: list[str] = []
    for a in decision.allocations:
        if a.reuse and a.uuid:
            out.append(a.uuid)
            continue
        rec = created.get((a.gpu_index, a.profile, a.start))
        if rec is None or not rec.mig_uuid:
            raise HardwareError(f"GPU {a.gpu_index}: {a.profile}@{a.start} was created but NVML reports no MIG device")
        out.append(rec.mig_uuid)
    return tuple(out)


def record_patch(target: Target, decision: Decision, mig_uuids: Sequence[str], cores: int) -> dict[str, str | None]:
    """The pod annotations after this container got its instances, in HAMi's formats plus ours."""
    pod = target.pod
    ann = annotations_of(pod)
    records = pod_records(pod)
    records[target.container] = tuple(
        HeldInstance(a.gpu_uuid, u, a.profile, a.start, a.memory_mib)
        for a, u in zip(decision.allocations, mig_uuids, strict=True))
    patch: dict[str, str | None] = {INSTANCES_ANNOTATION: encode_records(records)}
    n_containers = len(pod_containers(pod))
    if target.mode == "hami":
        left = erase_next_container(ann.get(DEVICES_TO_ALLOCATE, ""))  # HAMi's bytes, see kube/annotations.py
        patch[DEVICES_TO_ALLOCATE] = left
        if DEVICES_ALLOCATED not in ann:
            patch[DEVICES_ALLOCATED] = ann.get(DEVICES_TO_ALLOCATE, "")
        if next_pending_container(decode_pod_devices(left)) is None:
            patch[BIND_PHASE] = "success"
    else:
        try:
            allocated = list(decode_pod_devices(ann.get(DEVICES_ALLOCATED, ""), DEVICES_ALLOCATED))
        except InputError:
            allocated = []
        allocated += [()] * (n_containers - len(allocated))
        allocated[target.container] = tuple(
            ContainerDevice(uuid=_hami_uuid(a.gpu_uuid, a.geometry_index, a.slot), memory_mib=a.memory_mib,
                            cores=cores)
            for a in decision.allocations)
        patch[DEVICES_ALLOCATED] = encode_pod_devices(tuple(allocated[:n_containers]))
    return patch


def _hami_uuid(gpu_uuid: str, geometry: int | None, slot: int | None) -> str:
    return f"{gpu_uuid}[{geometry}-{slot}]" if geometry is not None and slot is not None else gpu_uuid


def allocate(device_ids: Sequence[str], config: AgentConfig, ports: Ports, geos: GeometryCache) -> Outcome:
    """The whole flow; the caller holds the agent lock. Raises plugin AllocationErrors with actionable text."""
    started = time.monotonic()
    try:
        pods = ports.list_pods()
    except ApiForbidden as exc:
        raise FailedPreconditionError(f"cannot list this node's pods: {exc}; grant the agent's ServiceAccount "
                                      "the RBAC rules in the Helm chart") from None
    except ApiError as exc:
        raise UnavailableError(f"cannot list this node's pods to find who asks for the GPU: {exc}; nothing was "
                               "changed, and the pod can be created again once the API server answers") from None
    try:
        target = find_target(pods, len(device_ids), config.names)
    except NoTargetError as exc:
        raise FailedPreconditionError(str(exc)) from None
    except InputError as exc:
        raise InvalidRequestError(str(exc)) from None
    try:
        return _allocate_for(target, pods, started, config, ports, geos)
    except AllocationError as exc:
        exc.pod = target.pod  # type: ignore[attr-defined]  # lets the agent post the Event on the pod
        exc.target = target  # type: ignore[attr-defined]  # and finish HAMi's bind handshake
        raise


def _checked_plan(target: Target, pods: list[Any], config: AgentConfig, ports: Ports,
                  geos: GeometryCache) -> tuple[Inventory, Request, Decision]:
    """Plan on the agent's picture, then check the GPUs the plan touches; plan again while they changed."""
    try:
        inv = ports.inventory(pods)
        for _ in range(CHECK_ROUNDS):
            request, decision = plan(target, inv, config, geos)
            fresher = ports.verify(pods, decision)
            if fresher is None:
                return inv, request, decision
            inv = fresher
    except HardwareError as exc:
        raise UnavailableError(f"pod {target.key}: cannot read the GPUs: {exc}") from None
    raise UnavailableError(f"pod {target.key}: the GPUs kept changing under hami-mig while it planned "
                           f"({CHECK_ROUNDS} times); nothing changed, the pod can be created again")


def _allocate_for(target: Target, pods: list[Any], started: float, config: AgentConfig, ports: Ports,
                  geos: GeometryCache) -> Outcome:
    attempt = 0
    replanned = False
    while True:  # re-plan after NVML IN_USE: a transient holder (DCGM polling, a process exiting) may let go
        inv, request, decision = _checked_plan(target, pods, config, ports, geos)
        if time.monotonic() - started > config.allocate_timeout_s:
            raise UnavailableError(
                f"pod {target.key}: planning outlasted {config.allocate_timeout_s:.0f}s; nothing changed")

        applied: ApplyResult | None = None
        if not decision.operations:
            break
        try:
            ports.journal.begin(target.key, decision.operations)
        except OSError as exc:
            raise UnavailableError(f"pod {target.key}: cannot write the allocate journal: {exc}; nothing changed") \
                from None
        try:
            applied = ports.apply(decision.operations, tuple(inv.held))
            break
        except ApplyError as exc:
            if not exc.rollback_failures:
                ports.journal.done()  # the backend removed what it created; else reconcile finishes the job
            outside = ports.outside_change()
            if outside and not replanned and not exc.rollback_failures:
                replanned = True  # someone else changed the GPU since the agent read it: plan on the new reading
                log.info("pod %s: %s; the GPU was changed outside hami-mig, planning again", target.key, exc)
                continue
            delay = in_use_retry(exc, attempt, started, config)
            if delay is None:
                tries = f" (gave up after {attempt + 1} tries)" if attempt else ""
                raise UnavailableError(f"pod {target.key}: {exc}{tries}") from None
            log.info("pod %s: GPU in use (%s); re-planning in %.1fs", target.key, exc, delay)
            time.sleep(delay)
            attempt += 1
        except HardwareError as exc:
            raise UnavailableError(f"pod {target.key}: {exc}") from None
    try:
        uuids = _mig_uuids(decision, applied)
        ports.prepare(uuids)
        ports.patch_pod(target.pod, record_patch(target, decision, uuids, request.cores or 0))
    except (ApiError, HardwareError, CdiError) as exc:
        if _undo(ports, applied):
            ports.journal.done()
        again = " (the pod changed meanwhile)" if isinstance(exc, ApiConflict) else ""
        raise UnavailableError(f"pod {target.key}: could not record the allocation{again}: {exc}; the new "
                               "instance was removed again and the pod can be created again") from None
    ports.journal.done()
    return Outcome(target, decision, uuids, applied, time.monotonic() - started, request)


def in_use_retry(exc: ApplyError, attempt: int, started: float, config: AgentConfig) -> float | None:
    """Seconds to wait before re-planning after an IN_USE failure, or None to give up (not IN_USE, tries
    used up, or the wait would outlast the Allocate timeout)."""
    if exc.code != IN_USE or attempt >= len(config.in_use_backoff_s):
        return None
    delay = config.in_use_backoff_s[attempt]
    if time.monotonic() - started + delay >= config.allocate_timeout_s:
        return None
    return delay


def _undo(ports: Ports, applied: ApplyResult | None) -> bool:
    """Destroy what this call created (never anything else) after a failure to record it; True when done."""
    if applied is None:
        return True
    ops = [Operation("destroy", s.op.gpu_index, s.op.profile, s.op.start, s.gpu_uuid)
           for s in applied.created if s.outcome == "created"]
    if not ops:
        return True
    try:
        ports.apply(ops, ())
    except (ApplyError, HardwareError) as exc:
        log.error("could not undo unrecorded instances %s: %s; the next reconcile removes them", ops, exc)
        return False
    return True


def answer(outcome: Outcome, config: AgentConfig) -> ContainerAllocation:
    return container_allocation(outcome.mig_uuids, config.cdi)
