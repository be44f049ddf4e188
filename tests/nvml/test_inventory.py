"""The inventory the agent keeps: equal to a fresh full read after its own changes, never trusted where it
could hurt (busy or re-made instances are refused at execution time), and re-read when others changed a GPU."""

from __future__ import annotations

import ctypes
import logging
import random

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hami_mig.mig.plan import Operation
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.nvml import ApplyError, GpuDevice, NvmlBackend
from hami_mig.nvml.inventory import NvmlInventory
from hami_mig.testing.nvmlsim import NvmlSim


def fresh(sim: NvmlSim) -> tuple[GpuDevice, ...]:
    """What a new process reading NVML from scratch would see."""
    backend = NvmlBackend(sim)
    backend.init()
    return backend.devices()


def node(spec: str = "A100-SXM4-80GB:2") -> tuple[NvmlSim, NvmlBackend, NvmlInventory]:
    sim = NvmlSim(spec)
    backend = NvmlBackend(sim)
    backend.init()
    inventory = NvmlInventory(backend)
    inventory.devices()
    return sim, backend, inventory


def outside(sim: NvmlSim) -> NvmlBackend:
    """Another tool on the node (nvidia-smi, a second agent): changes GPUs the inventory does not see."""
    other = NvmlBackend(sim)
    other.init()
    return other


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), spec=st.sampled_from(["A100-SXM4-80GB:2", "H100-SXM5-80GB:1,A30:1"]))
def test_the_picture_equals_a_fresh_read_after_every_own_change(seed: int, spec: str) -> None:
    rng = random.Random(seed)
    sim, backend, inventory = node(spec)
    held: set[str] = set()
    for _ in range(12):
        if held and rng.random() < 0.4:
            held.discard(rng.choice(sorted(held)))
        states = [d.to_gpu_state(held) for d in inventory.devices() if d.mig_enabled]
        decision = decide(states, Request(memory_percent=rng.choice((10, 25, 40, 50, 90))), mode="any")
        if not decision.fits:
            continue
        result = backend.apply(decision.operations, tuple(held))
        made = {(s.op.gpu_index, s.op.profile, s.op.start): s.instance for s in result.created}
        for a in decision.allocations:
            rec = made.get((a.gpu_index, a.profile, a.start))
            uuid = a.uuid if a.reuse else rec.mig_uuid if rec else None
            assert uuid
            held.add(uuid)
        assert inventory.devices() == fresh(sim)


def test_resync_reads_what_others_changed_and_says_what(caplog: pytest.LogCaptureFixture) -> None:
    sim, backend, inventory = node()
    backend.apply([Operation("create", 0, "3g.40gb", 4)])
    free = sim.add_instance(1, "1g.10gb", 6)  # another tool's instance
    outside(sim).apply([Operation("destroy", 0, "3g.40gb", 4)])
    assert inventory.devices() != fresh(sim)  # not read yet
    with caplog.at_level(logging.WARNING, logger="hami_mig.nvml.inventory"):
        found = inventory.resync()
    assert inventory.devices() == fresh(sim)
    assert found.changed
    assert any("GPU 0: 3g.40gb@4" in c and c.endswith("is gone") for c in found.outside)
    assert f"GPU 1: 1g.10gb@6 ({free}) appeared" in found.outside
    assert "changed outside hami-mig" in caplog.text
    assert inventory.resync() == inventory.resync().__class__(False, ())  # nothing new the second time


def test_processes_alone_are_not_reported_as_outside_changes() -> None:
    sim, _backend, inventory = node()
    uuid = sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    sim.make_busy(uuid)
    found = inventory.resync()
    assert found.changed and found.outside == ()
    hw = inventory.devices()[0].find("1g.10gb", 0)
    assert hw is not None and hw.busy


def test_check_of_a_reused_instance_is_two_calls_and_sees_new_processes() -> None:
    sim, _backend, inventory = node()
    uuid = sim.add_instance(0, "2g.20gb", 0)
    inventory.resync()
    sim.reset_counts()
    assert inventory.check({0: {uuid}}) is False
    assert sum(sim.calls.values()) == 2  # handle by UUID + one process query on the GPU
    sim.make_busy(uuid, [77])
    assert inventory.check({0: {uuid}}) is True  # plan again: it is busy now
    hw = inventory.devices()[0].find("2g.20gb", 0)
    assert hw is not None and hw.processes == (77,)


def test_check_re_reads_a_gpu_whose_reused_instance_is_gone() -> None:
    sim, _backend, inventory = node()
    uuid = sim.add_instance(0, "2g.20gb", 0)
    inventory.resync()
    outside(sim).apply([Operation("destroy", 0, "2g.20gb", 0), Operation("create", 0, "2g.20gb", 0)])
    assert inventory.check({0: {uuid}}) is True
    assert inventory.devices() == fresh(sim)
    hw = inventory.devices()[0].find("2g.20gb", 0)
    assert hw is not None and hw.mig_uuid != uuid  # the same place, a new instance


def test_check_re_reads_a_gpu_where_an_unknown_instance_runs_processes() -> None:
    sim, _backend, inventory = node()
    inventory.resync()
    sim.add_instance(0, "1g.10gb", 3, pids=[5])
    assert inventory.check({0: set()}) is True
    assert inventory.devices() == fresh(sim)


def test_check_without_process_permission_asks_the_reused_mig_device() -> None:
    sim, _backend, inventory = node()
    uuid = sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    sim.deny_process_queries(0)
    assert inventory.check({0: {uuid}}) is True  # may not look: treated as in use
    hw = inventory.devices()[0].find("1g.10gb", 0)
    assert hw is not None and hw.processes is None and hw.busy


def test_a_stale_picture_never_destroys_a_busy_instance() -> None:
    sim, backend, inventory = node()
    uuid = sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    sim.make_busy(uuid, [4242])  # the picture still says free
    with pytest.raises(ApplyError, match="running processes"):
        backend.apply([Operation("destroy", 0, "1g.10gb", 0)])
    assert fresh(sim)[0].find("1g.10gb", 0) is not None
    assert inventory.devices() == fresh(sim)


def test_a_stale_picture_never_destroys_a_held_instance() -> None:
    sim, backend, inventory = node()
    uuid = sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    with pytest.raises(ApplyError, match="held by a pod"):
        backend.apply([Operation("destroy", 0, "1g.10gb", 0)], protected=[uuid])
    assert fresh(sim)[0].find("1g.10gb", 0) is not None


def test_an_instance_made_again_by_others_is_found_by_the_full_lookup() -> None:
    sim, backend, inventory = node()
    sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    other = outside(sim)
    other.apply([Operation("destroy", 0, "1g.10gb", 0), Operation("create", 0, "1g.10gb", 0)])
    again = sim.snapshot()["gpus"][0]["gis"][0]["cis"][0]["uuid"]
    sim.make_busy(again)  # someone else's, in use: its known GI id now names another compute instance
    with pytest.raises(ApplyError, match="running processes"):
        backend.apply([Operation("destroy", 0, "1g.10gb", 0)])
    assert fresh(sim)[0].find("1g.10gb", 0) is not None


def test_a_create_where_others_took_the_place_fails_cleanly_and_re_reads(caplog: pytest.LogCaptureFixture) -> None:
    sim, backend, inventory = node()
    inventory.resync()
    theirs = sim.add_instance(0, "2g.20gb", 0)  # the picture shows GPU 0 empty
    with caplog.at_level(logging.WARNING), pytest.raises(ApplyError, match="Insufficient Resources") as info:
        backend.apply([Operation("create", 0, "3g.40gb", 4), Operation("create", 0, "1g.10gb", 1)])
    assert "rolled back: destroyed 3g.40gb@4" in str(info.value)
    assert [(hw.profile, hw.mig_uuid) for hw in fresh(sim)[0].instances] == [("2g.20gb", theirs)]
    assert inventory.devices() == fresh(sim)
    assert inventory.outside_change_seen() and not inventory.outside_change_seen()
    assert "changed outside hami-mig" in caplog.text


def test_a_failed_change_of_our_own_is_not_blamed_on_others() -> None:
    sim, backend, inventory = node()
    sim.add_instance(0, "1g.10gb", 0)
    inventory.resync()
    sim.fail("create_ci", error=pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(ApplyError):
        backend.apply([Operation("destroy", 0, "1g.10gb", 0), Operation("create", 0, "2g.20gb", 0)])
    assert inventory.devices() == fresh(sim)
    assert not inventory.outside_change_seen()


def test_a_resync_during_a_change_keeps_the_newer_picture() -> None:
    sim, backend, inventory = node()
    inventory.resync()
    seen: list[bool] = []
    sim.on_call("create_ci", 1, lambda: seen.append(inventory.resync().changed))
    backend.apply([Operation("create", 0, "7g.80gb", 0)])
    assert seen == [False]  # GPU 0 was being changed: the resync left it to the agent
    assert inventory.devices() == fresh(sim)


def test_mig_mode_changes_through_the_backend_are_read_back() -> None:
    sim, backend, inventory = node("H100-SXM5-80GB:1")
    inventory.resync()
    backend.set_mig_mode(0, False)
    assert inventory.devices()[0].mig_mode == "disabled"
    assert inventory.devices() == fresh(sim)


def test_a_bare_gpu_instance_is_completed_and_the_picture_follows() -> None:
    sim, backend, inventory = node()
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    sim.nvmlDeviceCreateGpuInstanceWithPlacement(handle, 14, ctypes.byref(pynvml.c_nvmlGpuInstancePlacement_t(2, 2)))
    inventory.resync()
    (step,) = backend.apply([Operation("create", 0, "2g.20gb", 2)]).steps
    assert step.outcome == "created"
    assert inventory.devices() == fresh(sim)


def test_steps_on_known_instances_take_few_calls() -> None:
    sim, backend, inventory = node("A100-SXM4-80GB:8")
    for start in range(7):
        sim.add_instance(3, "1g.10gb", start)
    inventory.resync()
    backend.apply([Operation("create", 5, "2g.20gb", 0)])  # a profile's first use reads its CI profile once
    sim.reset_counts()
    backend.apply([Operation("destroy", 3, "1g.10gb", 4), Operation("destroy", 3, "1g.10gb", 5),
                   Operation("create", 3, "2g.20gb", 4)])
    assert sim.mutating_calls() == 6
    # per destroy: GI by id, its info, CI by id, MIG device by UUID, its processes; the create: GI and CI
    # info, the MIG device at the index it should have (handle, GI id, CI id, UUID)
    assert sum(sim.calls.values()) - sim.mutating_calls() == 16, sim.calls
    assert inventory.devices() == fresh(sim)


def test_a_failure_that_found_others_changes_does_not_colour_a_later_one() -> None:
    """Reconcile's applies fail too (recovery, idle release): their finding must not make the next Allocate's
    own failure look like someone else's change (it would re-plan for nothing)."""
    sim, backend, inventory = node()
    inventory.resync()
    sim.add_instance(0, "2g.20gb", 0)  # others took the place the picture shows free
    with pytest.raises(ApplyError):
        backend.apply([Operation("create", 0, "3g.40gb", 4), Operation("create", 0, "1g.10gb", 1)])
    # nobody asked; now a failure of our own
    sim.fail("create_ci", error=pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(ApplyError):
        backend.apply([Operation("create", 0, "1g.10gb", 6)])
    assert not inventory.outside_change_seen()


def test_new_pids_on_an_instance_that_stays_busy_refresh_the_picture_without_a_new_plan() -> None:
    """A training job spawning workers changes its pids all the time; a plan reads only whether an instance is
    busy, so only that (or an instance turning idle) makes the Allocate plan again."""
    sim, _backend, inventory = node()
    busy = sim.add_instance(0, "3g.40gb", 0, pids=[10])
    free = sim.add_instance(0, "1g.10gb", 6)
    inventory.resync()
    sim.set_processes(busy, [10, 11, 12])
    assert inventory.check({0: {free}}) is False
    hw = inventory.devices()[0].find("3g.40gb", 0)
    assert hw is not None and hw.processes == (10, 11, 12)  # the picture has them all the same
    sim.make_idle(busy)
    assert inventory.check({0: {free}}) is True  # idle now: a plan may use its room
