"""Apply a plan's operations step by step; on failure undo what this plan created and say exactly what happened."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import GpuModel, Profile, UnknownProfileError
from hami_mig.mig.plan import Operation
from hami_mig.nvml import errors as E
from hami_mig.nvml.device import GpuDevice
from hami_mig.nvml.discovery import compute_instances, find_gpu_instance
from hami_mig.nvml.fastpath import STALE, create_known_free, destroy_known
from hami_mig.nvml.instances import Created, Destroyed, InstanceRecord, create_instance, destroy_instance

if TYPE_CHECKING:
    from hami_mig.nvml.backend import NvmlBackend

log = logging.getLogger(__name__)

Outcome = Literal["created", "existing", "destroyed", "absent"]


@dataclass(frozen=True)
class StepResult:
    """What one operation did: created / found existing / destroyed / found nothing to destroy."""

    op: Operation
    gpu_uuid: str
    outcome: Outcome
    instance: InstanceRecord | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op.op, "gpu_index": self.op.gpu_index, "gpu_uuid": self.gpu_uuid,
                               "profile": self.op.profile, "start": self.op.start, "outcome": self.outcome}
        if self.instance is not None:
            out.update({k: v for k, v in self.instance.to_json().items() if k not in ("profile", "start")})
        return out


@dataclass(frozen=True)
class ApplyResult:
    """Every step's result, in plan order."""

    steps: tuple[StepResult, ...]

    @property
    def created(self) -> tuple[StepResult, ...]:
        """Every create step, made now (outcome "created") or found already there ("existing")."""
        return tuple(s for s in self.steps if s.op.op == "create")

    @property
    def newly_created(self) -> tuple[StepResult, ...]:
        """Creates this call actually made (what a caller's own undo may destroy)."""
        return tuple(s for s in self.steps if s.outcome == "created")

    @property
    def existing(self) -> tuple[StepResult, ...]:
        """Creates that found the instance already there (idempotent re-apply)."""
        return tuple(s for s in self.steps if s.outcome == "existing")

    @property
    def destroyed(self) -> tuple[StepResult, ...]:
        return tuple(s for s in self.steps if s.outcome == "destroyed")

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": True,
            "operations": [s.to_json() for s in self.steps],
            "created": [s.to_json() for s in self.newly_created],
            "existing": [s.to_json() for s in self.existing],
            "destroyed": [s.to_json() for s in self.destroyed],
        }


def op_label(op: Operation, gpu_uuid: str = "") -> str:
    where = f"GPU {op.gpu_index} ({gpu_uuid})" if gpu_uuid else f"GPU {op.gpu_index}"
    return f"{op.op} {op.profile}@{op.start} on {where}"


def resolve_profile(model: GpuModel, op: Operation, n: int) -> Profile:
    """The GPU's own profile for an operation, or InputError naming the field (bad plan, not a driver fault)."""
    if op.op not in ("create", "destroy"):
        raise InputError(f"operations[{n}].op", op.op, "expected create or destroy")
    try:
        profile = model.profile(op.profile)
    except UnknownProfileError as exc:
        raise InputError(f"operations[{n}].profile", op.profile, str(exc)) from None
    if op.start not in profile.starts:
        raise InputError(f"operations[{n}].start", op.start,
                         f"{profile.name} on GPU {op.gpu_index} may start at {', '.join(map(str, profile.starts))}")
    return profile


@dataclass
class _Context:
    handles: dict[int, tuple[Any, str]]
    profiles: list[Profile]


def _prepare(backend: NvmlBackend, ops: tuple[Operation, ...]) -> _Context:
    handles: dict[int, tuple[Any, str]] = {}
    count = backend.facts.count()
    for n, op in enumerate(ops):
        if op.gpu_index not in handles:
            if not 0 <= op.gpu_index < count:
                raise InputError(f"operations[{n}].gpu_index", op.gpu_index, f"this node has GPUs 0..{count - 1}")
            handles[op.gpu_index] = backend.handle(op.gpu_index)
        uuid = handles[op.gpu_index][1]
        if op.gpu_uuid and op.gpu_uuid != uuid:
            raise InputError(f"operations[{n}].gpu_uuid", op.gpu_uuid, f"GPU {op.gpu_index} is {uuid}")
    profiles = [resolve_profile(backend.model(op.gpu_index), op, n) for n, op in enumerate(ops)]
    return _Context(handles, profiles)


def apply_plan(backend: NvmlBackend, ops: tuple[Operation, ...], protected: Collection[str] = (),
               known: Mapping[int, GpuDevice] | None = None) -> ApplyResult:
    """Execute `ops` in order under the locks of every GPU they touch.

    On failure: destroy what this plan created (newest first), never touch instances it did not create,
    and raise ApplyError naming the failed step, the GPU and the NVML error. Free instances this plan
    destroyed before the failure are gone for good and the error says so. `known`: what the caller's
    inventory holds per GPU index, so steps on instances it knows take the short paths of fastpath.py.
    """
    ctx = _prepare(backend, ops)
    nvml = backend.nvml
    done: list[tuple[StepResult, Created | None]] = []
    shown = {i: dev for i, dev in (known or {}).items() if dev.mig_enabled and i in ctx.handles}
    live = {i: {(hw.gi_id, ci.ci_id) for hw in dev.instances for ci in hw.compute} for i, dev in shown.items()}
    with backend.locks.hold(uuid for _h, uuid in ctx.handles.values()):
        for n, (op, profile) in enumerate(zip(ops, ctx.profiles, strict=True)):
            handle, uuid = ctx.handles[op.gpu_index]
            dev = shown.get(op.gpu_index)
            if dev is not None and dev.uuid != uuid:
                dev = None
            try:
                if op.op == "create":
                    if dev is not None and dev.find(op.profile, op.start) is None:
                        created = create_known_free(backend.facts, backend.facts.get(op.gpu_index), profile,
                                                    op.start, live[op.gpu_index])
                    else:
                        created = create_instance(nvml, handle, profile, op.start)
                        if op.gpu_index in live and created.record.ci_id is not None:
                            live[op.gpu_index].add((created.record.gi_id, created.record.ci_id))
                    outcome: Outcome = "existing" if created.existed else "created"
                    done.append((StepResult(op, uuid, outcome, created.record), created))
                else:
                    gone = _destroy(backend, op, profile, dev, protected, live)
                    record = gone.record if gone else None
                    done.append((StepResult(op, uuid, "destroyed" if gone else "absent", record), None))
                log.info("%s: %s", op_label(op, uuid), done[-1][0].outcome)
            except Exception as exc:
                raise _failed(backend, ops, n, uuid, exc, done, protected) from exc
    return ApplyResult(tuple(step for step, _ in done))


def _destroy(backend: NvmlBackend, op: Operation, profile: Profile, dev: GpuDevice | None, protected: Collection[str],
             live: dict[int, set[tuple[int, int]]]) -> Destroyed | None:
    """The short path for a whole-GI instance the inventory knows; the full lookup otherwise or when stale."""
    hw = dev.find(op.profile, op.start) if dev is not None else None
    if hw is not None and hw.standard and hw.mig_uuid:
        fast = destroy_known(backend.facts, backend.facts.get(op.gpu_index), profile, hw, protected,
                             live[op.gpu_index])
        if isinstance(fast, Destroyed):
            return fast
        assert fast == STALE
    handle, _uuid = backend.handle(op.gpu_index)
    gone = destroy_instance(backend.nvml, handle, profile, op.start, protected)
    if gone is not None and op.gpu_index in live:
        live[op.gpu_index].discard((gone.record.gi_id, gone.record.ci_id or 0))
    return gone


def _failed(backend: NvmlBackend, ops: tuple[Operation, ...], n: int, uuid: str, exc: Exception,
            done: list[tuple[StepResult, Created | None]], protected: Collection[str]) -> E.ApplyError:
    op = ops[n]
    if isinstance(exc, E.InstanceBusyError):
        reason, code = f"refused: {exc}", exc.code
    elif isinstance(exc, E.HardwareError):
        reason, code = f"failed: {exc}", exc.code
    elif E.is_nvml_error(exc, backend.nvml):
        reason, code = f"failed: {E.describe_nvml(exc)}", E.nvml_code(exc)
    else:
        reason, code = f"failed: {type(exc).__name__}: {exc}", None
    notes = getattr(exc, "__notes__", None) or []
    message = f"step {n + 1}/{len(ops)}: {op_label(op, uuid)} {reason}" + "".join(f" ({m})" for m in notes)
    rolled, failures = _rollback(backend, done)
    lost = tuple(f"{s.op.profile}@{s.op.start} on GPU {s.op.gpu_index}"
                 + (f" ({s.instance.mig_uuid})" if s.instance and s.instance.mig_uuid else "")
                 for s, _ in done if s.outcome == "destroyed")
    if rolled:
        message += f"; rolled back: destroyed {', '.join(rolled)} created by this plan"
    elif not failures:
        message += "; nothing to roll back"
    if failures:
        message += f"; ROLLBACK FAILED for {', '.join(failures)}"
    if lost:
        message += (f"; not restored: {', '.join(lost)} (free instances this plan destroyed before the failure; "
                    "a destroyed instance cannot be brought back, re-plan to re-create one)")
    log.debug("%s", message)
    return E.ApplyError(message, code, failed_step=n, rolled_back=tuple(rolled), rollback_failures=tuple(failures),
                        not_restored=lost)


def _rollback(backend: NvmlBackend, done: list[tuple[StepResult, Created | None]]) -> tuple[list[str], list[str]]:
    """Destroy, newest first, what this plan created; pre-existing instances are never touched."""
    rolled: list[str] = []
    failures: list[str] = []
    for step, created in reversed(done):
        if created is None or created.existed:
            continue
        rec = created.record
        label = f"{rec.profile}@{rec.start} on GPU {step.op.gpu_index} ({rec.mig_uuid})"
        try:
            handle, _uuid = backend.handle(step.op.gpu_index)
            profile = backend.model(step.op.gpu_index).profile(rec.profile)
            if created.gi_created:
                gone = destroy_instance(backend.nvml, handle, profile, rec.start, expect_gi_id=rec.gi_id)
                if gone is None:
                    raise E.HardwareError("it is no longer there")
            else:  # we only added the CI to a GI that was already there: remove just the CI
                _destroy_ci(backend, handle, profile, rec)
            rolled.append(label)
        except Exception as exc:
            why = E.describe_nvml(exc) if E.is_nvml_error(exc, backend.nvml) else str(exc)
            failures.append(f"{label}: {why}")
    return rolled, failures


def _destroy_ci(backend: NvmlBackend, handle: Any, profile: Profile, rec: InstanceRecord) -> None:
    found = find_gpu_instance(backend.nvml, handle, profile, rec.start)
    if found is None:
        raise E.HardwareError("its GPU instance is no longer there")
    for ci, cinfo, _p in compute_instances(backend.nvml, found[0]):
        if int(cinfo.id) == rec.ci_id:
            backend.nvml.nvmlComputeInstanceDestroy(ci)
            return
    raise E.HardwareError(f"compute instance {rec.ci_id} is no longer there")
