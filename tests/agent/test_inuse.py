"""NVML IN_USE: re-plan a bounded number of times, then fail naming who holds the GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import pynvml
import pytest

from hami_mig.mig.plan import Operation
from hami_mig.nvml import ApplyError
from hami_mig.nvml.holders import GpuHolder, describe_holders, known_as, proc_holders
from hami_mig.testing.cluster import SimCluster
from hami_mig.testing.nvmlsim.caps import add_fake_process
from tests.agent.conftest import MakeCluster, wait_event


def _free_7g(c: SimCluster) -> str:
    """A free 7g.80gb on GPU 0: the next small pod must destroy it (a reshape)."""
    c.submit("big", {"nvidia.com/gpumem": 70000})
    a = c.admit("big")
    assert a.ok, a.error
    c.finish("big")
    c.reconcile()
    return a.devices[0]


def test_in_use_failure_names_the_holder_after_bounded_retries(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        add_fake_process(c.config.proc_root, 77, "nv-hostengine", ("/dev/nvidia0",))
        add_fake_process(c.config.proc_root, 78, "bash")
        _free_7g(c)
        for _ in range(4):
            c.sim.fail("destroy_gi", error=pynvml.NVML_ERROR_IN_USE)
        c.sim.reset_counts()
        c.submit("small", {"nvidia.com/gpumem": 8000})
        a = c.admit("small")
        assert not a.ok
        assert "NVML_ERROR_IN_USE" in a.error and "gave up after 4 tries" in a.error
        assert "held by: nv-hostengine (pid 77, DCGM host engine) on /dev/nvidia0 (open)" in a.error
        assert "bash" not in a.error
        assert c.sim.calls["nvmlGpuInstanceDestroy"] == 4  # 1 try + 3 re-plans (config.in_use_backoff_s)
        e = wait_event(c, "MIGAllocateFailed", about="small")
        assert "nv-hostengine (pid 77, DCGM host engine)" in e["message"]
        # the 7g was restored (its compute instance re-created) and is free for the next pod
        assert [h.profile for d in c.backend.devices() for h in d.instances] == ["7g.80gb"]


def test_a_transient_in_use_is_retried_and_succeeds(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        _free_7g(c)
        c.sim.fail("destroy_gi", error=pynvml.NVML_ERROR_IN_USE)
        c.sim.reset_counts()
        c.submit("small", {"nvidia.com/gpumem": 8000})
        a = c.admit("small")
        assert a.ok, a.error
        assert c.sim.calls["nvmlGpuInstanceDestroy"] == 2


def test_processes_appearing_mid_plan_are_named_and_the_next_plan_avoids_them(
        make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hami_mig.agent")
    with make_cluster(sim_gpus="A100-SXM4-80GB:2") as c:
        add_fake_process(c.config.proc_root, 4242, "python3")
        first = _free_7g(c)  # on GPU 0; first fit will plan "destroy it, create a 1g" there
        # A process grabs the free 7g just as the plan destroys it (a race the planner cannot see).
        c.sim.on_call("destroy_ci", 1, lambda: c.sim.make_busy(first, [4242]))
        c.submit("b", {"nvidia.com/gpumem": 8000})
        b = c.admit("b")
        assert b.ok, b.error
        gpu_of = {h.mig_uuid: d.index for d in c.backend.devices() for h in d.instances}
        assert gpu_of[first] == 0 and gpu_of[b.devices[0]] == 1  # the re-plan went around the busy 7g
        assert any(f"held by: python3 (pid 4242) on {first}" in r.getMessage() for r in caplog.records)


def test_explain_in_use_names_nvml_processes_with_their_comm(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        add_fake_process(c.config.proc_root, 4242, "python3")
        mig = c.sim.add_instance(0, "3g.40gb", 0, pids=[4242, 4343])
        assert c.agent is not None
        exc = ApplyError("step 1/1: destroy 3g.40gb@0 on GPU 0 refused", pynvml.NVML_ERROR_IN_USE, failed_step=0)
        detailed = c.agent.ops.explain_in_use(exc, [Operation("destroy", 0, "3g.40gb", 0)])
        assert f"held by: python3 (pid 4242) on {mig}; ? (pid 4343) on {mig}" in str(detailed)
        assert detailed.code == pynvml.NVML_ERROR_IN_USE and detailed.failed_step == 0
        other = ApplyError("x", pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES, failed_step=0)
        assert c.agent.ops.explain_in_use(other, [Operation("create", 0, "3g.40gb", 4)]) is other


def test_proc_scan_finds_well_known_clients_and_open_device_files(tmp_path: Path) -> None:
    root = str(tmp_path)
    add_fake_process(root, 10, "nvidia-persiste")  # comm keeps 15 characters
    add_fake_process(root, 11, "dcgm-exporter", ("/dev/nvidia-caps/nvidia-cap12",))
    add_fake_process(root, 12, "my-trainer", ("/dev/nvidia1",))
    add_fake_process(root, 13, "sshd", ("/dev/null",))
    found = proc_holders(root, ["/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap12"])
    assert sorted(found, key=lambda h: h.pid) == [
        GpuHolder(10, "nvidia-persiste", "this node", "NVIDIA persistence daemon"),
        GpuHolder(11, "dcgm-exporter", "/dev/nvidia-caps/nvidia-cap12 (open)", "DCGM exporter"),
        GpuHolder(12, "my-trainer", "/dev/nvidia1 (open)", ""),
    ]
    assert proc_holders(str(tmp_path / "missing"), ["/dev/nvidia0"]) == []
    assert known_as("nv-hostengine") == "DCGM host engine" and known_as("python3") == ""
    assert describe_holders([GpuHolder(1, "a", "GPU 0")] * 8, limit=2).endswith("and 6 more")
