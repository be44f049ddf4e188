"""Plan execution: created/existing/destroyed results, idempotency, refusals, rollback and its limits."""

from __future__ import annotations

import pynvml
import pytest

from hami_mig.mig.plan import Operation
from hami_mig.nvml import ApplyError, NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim

from .helpers import layout


def create(gpu: int, profile: str, start: int) -> Operation:
    return Operation("create", gpu, profile, start)


def destroy(gpu: int, profile: str, start: int) -> Operation:
    return Operation("destroy", gpu, profile, start)


def test_create_reads_back_real_ids_and_uuids(backend: NvmlBackend) -> None:
    result = backend.apply([create(0, "3g.40gb", 4), create(0, "1g.10gb", 2), create(1, "7g.80gb", 0)])
    assert [s.outcome for s in result.steps] == ["created"] * 3
    dev0, dev1 = backend.devices()
    for step in result.steps:
        dev = dev0 if step.op.gpu_index == 0 else dev1
        hw = dev.find(step.op.profile, step.op.start)
        assert hw is not None and step.instance is not None
        assert (hw.mig_uuid, hw.gi_id, hw.ci_id, hw.memory_mib) == (
            step.instance.mig_uuid, step.instance.gi_id, step.instance.ci_id, step.instance.memory_mib)
    assert result.steps[1].instance is not None and result.steps[1].instance.gi_id == 9
    assert result.to_json()["created"][0]["mig_uuid"].startswith("MIG-")


def test_reapply_is_idempotent_and_mutates_nothing(sim: NvmlSim, backend: NvmlBackend) -> None:
    old = sim.add_instance(0, "2g.20gb", 0)
    plan = [destroy(0, "2g.20gb", 0), create(0, "1g.10gb", 0), create(0, "4g.40gb", 4 - 4)]
    with pytest.raises(ApplyError):  # 1g@0 and 4g@0 overlap: a bad plan fails and rolls back
        backend.apply(plan)
    plan = [destroy(0, "2g.20gb", 0), create(0, "4g.40gb", 0), create(0, "3g.40gb", 4)]
    sim.add_instance(0, "2g.20gb", 0)
    first = backend.apply(plan)
    assert [s.outcome for s in first.steps] == ["destroyed", "created", "created"]
    assert first.steps[0].instance is not None and first.steps[0].instance.mig_uuid != old
    sim.reset_counts()
    again = backend.apply(plan)
    assert [s.outcome for s in again.steps] == ["absent", "existing", "existing"]
    assert sim.mutating_calls() == 0
    assert [s.instance.mig_uuid for s in again.steps[1:] if s.instance] == [
        s.instance.mig_uuid for s in first.steps[1:] if s.instance]


def test_interrupted_create_is_completed(sim: NvmlSim, backend: NvmlBackend) -> None:
    import ctypes

    h = sim.nvmlDeviceGetHandleByIndex(0)
    sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, 14, ctypes.byref(pynvml.c_nvmlGpuInstancePlacement_t(2, 2)))
    (step,) = backend.apply([create(0, "2g.20gb", 2)]).steps
    assert step.outcome == "created" and step.instance is not None and step.instance.mig_uuid
    assert backend.device(0).find("2g.20gb", 2) is not None


@pytest.mark.parametrize(("kind", "nth", "error", "failed_step"), [
    ("create_gi", 3, pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES, 4),
    ("create_ci", 2, pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES, 3),
    ("destroy_ci", 2, pynvml.NVML_ERROR_IN_USE, 1),
    ("destroy_gi", 1, pynvml.NVML_ERROR_UNKNOWN, 0),
    ("create_gi", 1, pynvml.NVML_ERROR_NO_PERMISSION, 2),
])
def test_rollback_leaves_in_use_untouched_and_leaks_nothing(
        sim: NvmlSim, backend: NvmlBackend, kind: str, nth: int, error: int, failed_step: int) -> None:
    busy = sim.add_instance(0, "3g.40gb", 4, pids=[4242])
    sim.add_instance(0, "1g.10gb", 0)
    sim.add_instance(0, "1g.10gb", 1)
    before = sim.snapshot()
    plan = [destroy(0, "1g.10gb", 0), destroy(0, "1g.10gb", 1), create(0, "2g.20gb", 0), create(0, "1g.10gb", 2),
            create(0, "1g.10gb", 3)]
    sim.fail(kind, nth=nth, error=error)
    with pytest.raises(ApplyError) as info:
        backend.apply(plan)
    err = info.value
    op = plan[failed_step]
    assert f"{op.op} {op.profile}@{op.start} on GPU 0 (GPU-" in str(err)
    assert err.code == error
    assert err.failed_step == failed_step and not err.rollback_failures
    after = sim.snapshot()
    # The busy instance is byte-for-byte the same; nothing the plan created survives.
    gis = {(g["profile"], g["start"]): g for g in after["gpus"][0]["gis"]}
    assert gis[(2, 4)] == next(g for g in before["gpus"][0]["gis"] if g["start"] == 4)
    assert busy in str(gis[(2, 4)])
    destroyed = {(s.split("@")[0], int(s.split("@")[1].split()[0])) for s in err.not_restored}
    dev = backend.device(0)
    assert layout(dev) == {("3g.40gb", 4), ("1g.10gb", 0), ("1g.10gb", 1)} - destroyed
    assert all(len(hw.compute) == 1 for hw in dev.instances)  # no half-made or half-destroyed instance
    if destroyed:
        assert "not restored" in str(err) and "cannot be brought back" in str(err)
    assert after["gpus"][1] == before["gpus"][1]


def test_error_message_names_the_nvml_error(sim: NvmlSim, backend: NvmlBackend) -> None:
    sim.add_instance(0, "1g.10gb", 3)
    with pytest.raises(ApplyError) as info:
        backend.apply([create(0, "1g.10gb", 6), create(0, "2g.20gb", 2)])
    msg = str(info.value)
    assert msg.startswith("step 2/2: create 2g.20gb@2 on GPU 0 (GPU-")
    assert "failed: NVML_ERROR_INSUFFICIENT_RESOURCES (Insufficient Resources)" in msg
    assert "rolled back: destroyed 1g.10gb@6 on GPU 0 (MIG-" in msg
    assert layout(backend.device(0)) == {("1g.10gb", 3)}


def test_instance_busy_between_plan_and_apply_is_not_destroyed(sim: NvmlSim, backend: NvmlBackend) -> None:
    victim = sim.add_instance(0, "2g.20gb", 2)
    plan = [create(0, "1g.10gb", 0), destroy(0, "2g.20gb", 2), create(0, "2g.20gb", 2)]
    sim.make_busy(victim, [999])  # a pod started on it after the plan was made
    with pytest.raises(ApplyError) as info:
        backend.apply(plan)
    assert "step 2/3: destroy 2g.20gb@2" in str(info.value) and "refused" in str(info.value)
    assert "999" in str(info.value)
    dev = backend.device(0)
    assert layout(dev) == {("2g.20gb", 2)} and dev.instances[0].mig_uuid == victim


def test_pod_held_and_unknown_process_instances_are_refused(sim: NvmlSim, backend: NvmlBackend) -> None:
    held = sim.add_instance(0, "1g.10gb", 5)
    with pytest.raises(ApplyError, match="held by a pod"):
        backend.apply([destroy(0, "1g.10gb", 5)], protected={held})
    sim.deny_process_queries(0)
    with pytest.raises(ApplyError, match="cannot be queried"):
        backend.apply([destroy(0, "1g.10gb", 5)])
    assert backend.device(0).instances[0].mig_uuid == held


def test_gpu_lost_mid_plan(sim: NvmlSim, backend: NvmlBackend) -> None:
    sim.on_call("create_gi", 2, lambda: sim.lose_gpu(1))
    with pytest.raises(ApplyError) as info:
        backend.apply([create(0, "1g.10gb", 0), create(1, "1g.10gb", 0)])
    msg = str(info.value)
    assert "NVML_ERROR_GPU_IS_LOST" in msg and "create 1g.10gb@0 on GPU 1" in msg
    assert "rolled back: destroyed 1g.10gb@0 on GPU 0" in msg
    assert backend.device(0).instances == ()
    assert backend.device(1).mig_mode == "unknown"


def test_gpu_lost_before_rollback_is_reported(sim: NvmlSim, backend: NvmlBackend) -> None:
    def lose() -> None:
        sim.lose_gpu(0)
    sim.on_call("create_gi", 2, lose)
    with pytest.raises(ApplyError) as info:
        backend.apply([create(0, "1g.10gb", 0), create(0, "1g.10gb", 1)])
    assert "ROLLBACK FAILED for 1g.10gb@0 on GPU 0" in str(info.value)
    assert info.value.rollback_failures


def test_mig_disabled_gpu_is_refused_without_touching_it() -> None:
    sim = NvmlSim("A100-SXM4-80GB:1:mig-off")
    b = NvmlBackend(sim)
    b.init()
    with pytest.raises(Exception, match="nvidia-smi -i 0 -mig 1"):
        b.apply([create(0, "1g.10gb", 0)])
    assert sim.mutating_calls() == 0
