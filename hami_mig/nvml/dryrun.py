"""Check a plan against the devices as they are now, without touching them (`hami-mig apply --dry-run`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from hami_mig.errors import InputError
from hami_mig.mig.plan import Operation
from hami_mig.nvml.apply import resolve_profile
from hami_mig.nvml.device import GpuDevice, HwInstance, enable_hint


@dataclass(frozen=True)
class PredictedStep:
    """What apply would do for one operation, or why it would fail."""

    op: Operation
    gpu_uuid: str
    outcome: str  # create | skip-existing | destroy | skip-absent | fail
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.op.to_json(), "gpu_uuid": self.gpu_uuid, "outcome": self.outcome}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class _Slot:
    profile: str
    start: int
    slices: range
    busy: bool
    uuid: str | None


def _slots(dev: GpuDevice, protected: Collection[str]) -> list[_Slot]:
    def slot(hw: HwInstance) -> _Slot:
        busy = hw.busy or any(u in protected for u in hw.uuids())
        return _Slot(hw.profile, hw.start, range(hw.start, hw.start + hw.size), busy, hw.mig_uuid)

    return [slot(hw) for hw in dev.instances]


def predict(devices: Sequence[GpuDevice], ops: Sequence[Operation],
            protected: Collection[str] = ()) -> tuple[PredictedStep, ...]:
    """Replay the operations on a copy of the current layouts; InputError for a malformed plan."""
    by_index = {d.index: d for d in devices}
    layouts: dict[int, list[_Slot]] = {}
    out: list[PredictedStep] = []
    for n, op in enumerate(ops):
        dev = by_index.get(op.gpu_index)
        if dev is None:
            have = ", ".join(str(i) for i in sorted(by_index)) or "none"
            raise InputError(f"operations[{n}].gpu_index", op.gpu_index, f"this node has GPUs {have}")
        if op.gpu_uuid and op.gpu_uuid != dev.uuid:
            raise InputError(f"operations[{n}].gpu_uuid", op.gpu_uuid, f"GPU {op.gpu_index} is {dev.uuid}")
        if not dev.mig_enabled or dev.model is None:
            out.append(PredictedStep(op, dev.uuid, "fail", dev.message or enable_hint(dev.index)))
            continue
        profile = resolve_profile(dev.model, op, n)
        layout = layouts.setdefault(dev.index, _slots(dev, protected))
        here = next((s for s in layout if s.profile == op.profile and s.start == op.start), None)
        if op.op == "destroy":
            if here is None:
                out.append(PredictedStep(op, dev.uuid, "skip-absent", "no such instance"))
            elif here.busy:
                out.append(PredictedStep(op, dev.uuid, "fail", f"{here.uuid or 'it'} is in use"))
            else:
                layout.remove(here)
                out.append(PredictedStep(op, dev.uuid, "destroy"))
            continue
        if here is not None:
            out.append(PredictedStep(op, dev.uuid, "skip-existing", here.uuid or ""))
            continue
        wanted = set(profile.slices(op.start))
        clash = next((s for s in layout if wanted & set(s.slices)), None)
        if clash is not None:
            out.append(PredictedStep(op, dev.uuid, "fail", f"overlaps {clash.profile}@{clash.start}"))
            continue
        if sum(1 for s in layout if s.profile == op.profile) >= profile.max_count:
            out.append(PredictedStep(op, dev.uuid, "fail", f"{profile.max_count}x {profile.name} already"))
            continue
        layout.append(_Slot(op.profile, op.start, profile.slices(op.start), False, None))
        out.append(PredictedStep(op, dev.uuid, "create"))
    return tuple(out)
