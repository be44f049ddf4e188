"""The agent plans on its own picture of the GPUs: few NVML calls per Allocate, no full read on the way, and
still never a wrong or unsafe answer when someone else changed a GPU since the picture was taken."""

from __future__ import annotations

import logging
import threading
import urllib.request

import pytest

from hami_mig.cli.device_plugin import start_metrics
from hami_mig.mig.plan import Operation
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.cluster import SimCluster
from tests.agent.conftest import MakeCluster

FULL_READ = "nvmlDeviceGetGpuInstances"  # only a full read enumerates every GI profile


def admitted(c: SimCluster, name: str, mib: int = 9000) -> str:
    c.submit(name, {"nvidia.com/gpumem": mib})
    a = c.admit(name)
    assert a.ok, a.error
    return a.devices[0]


def other_tool(c: SimCluster) -> NvmlBackend:
    backend = NvmlBackend(c.sim)
    backend.init()
    return backend


def test_an_allocate_asks_nvml_only_about_the_gpu_it_uses(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:8") as c:
        admitted(c, "warm")  # the first 1g.10gb reads its compute-instance profile once
        c.sim.reset_counts()
        first = admitted(c, "a")
        reshape = dict(c.sim.calls)
        assert c.sim.mutating_calls() == 2 and FULL_READ not in reshape
        assert sum(reshape.values()) <= 20, reshape
        c.finish("a")
        c.sim.reset_counts()
        assert admitted(c, "b") == first  # the free instance is reused
        assert c.sim.calls == {"nvmlDeviceGetHandleByUUID": 1, "nvmlDeviceGetComputeRunningProcesses": 1}


def test_an_instance_that_got_busy_since_the_last_reading_is_not_handed_out(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        first = admitted(c, "a")
        c.finish("a")
        c.sim.make_busy(first, [4242])  # someone else's process; the agent's picture says free
        second = admitted(c, "b")
        assert second != first
        found = c.backend.device(0).by_uuid(first)
        assert found is not None and found.processes == (4242,)  # untouched


def test_a_busy_instance_someone_else_made_where_the_agent_would_create_is_left_alone(
        make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        theirs = c.sim.add_instance(0, "7g.80gb", 0, pids=[5])  # the picture: an empty GPU
        c.submit("b", {"nvidia.com/gpumem": 9000})
        a = c.admit("b")
        assert not a.ok and "7g.80gb" in a.error  # nothing fits next to it: refused, not carved into
        assert [hw.mig_uuid for hw in c.backend.device(0).instances] == [theirs]


def test_a_create_refused_because_others_took_the_place_is_planned_again(
        make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c, caplog.at_level(logging.INFO):
        other_tool(c).apply([Operation("create", 0, "4g.40gb", 0)])  # idle: invisible to the process check
        c.submit("b", {"nvidia.com/gpumem": 30000})
        a = c.admit("b")
        assert a.ok, a.error
        assert "changed outside hami-mig" in caplog.text
        assert c.agent is not None
        assert c.agent.inventory.devices() == c.backend.devices()


def test_the_periodic_resync_notices_a_held_instance_destroyed_by_others(
        make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1", nvml_resync_interval_s=0.2) as c, \
            caplog.at_level(logging.WARNING):
        mig = admitted(c, "a")
        hw = c.backend.device(0).by_uuid(mig)
        assert hw is not None
        c.sim.make_idle(mig)
        other_tool(c).apply([Operation("destroy", 0, hw.profile, hw.start)])
        assert c.wait(lambda: "but NVML has no such MIG device" in caplog.text, 10), caplog.text
        assert f"{hw.profile}@{hw.start} ({mig}) is gone" in caplog.text


def test_scrapes_and_snapshots_never_wait_for_an_allocate(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        assert c.agent is not None
        server = start_metrics(c.agent, None, "127.0.0.1", 0)
        inside, release = threading.Event(), threading.Event()
        c.sim.on_call("create_gi", 1, lambda: (inside.set(), release.wait(30)))
        c.submit("a", {"nvidia.com/gpumem": 9000})
        worker = threading.Thread(target=c.admit, args=("a",))
        worker.start()
        try:
            assert inside.wait(10)  # the Allocate holds the agent's lock, stuck in NVML
            assert c.agent.current_snapshot().gpus
            assert c.agent.snapshot(wait_s=0).gpus
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
                assert b"hami_mig_snapshot_up 1.0" in response.read()
        finally:
            release.set()
            worker.join(30)
            server.stop()
        assert c.agent.snapshot(wait_s=5).gpus[0].instances  # then the new picture is published


def test_an_allocate_never_waits_for_a_full_resync(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:2") as c:
        assert c.agent is not None
        inside, release = threading.Event(), threading.Event()
        c.sim.on_call("nvmlDeviceGetMigMode", 1, lambda: (inside.set(), release.wait(30)))  # full reads only
        resync = threading.Thread(target=c.agent.reconcile)
        resync.start()
        try:
            assert inside.wait(10)  # a resync is stuck reading GPU 0
            admitted(c, "a")  # and an Allocate goes through meanwhile
        finally:
            release.set()
            resync.join(30)
        assert c.agent.inventory.devices() == c.backend.devices()
