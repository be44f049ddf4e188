"""MIG mode per GPU: the node config names each GPU's mode; `--manage-mig-mode` switches idle GPUs, never resets."""

from __future__ import annotations

import json
import logging

import pytest

from hami_mig.agent.config import RESOURCE_NAME
from hami_mig.agent.node import GPUS_ANNOTATION
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.nodeconfig import GpuMode
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.cluster import SimCluster
from hami_mig.testing.nvmlsim import NvmlSim
from tests.agent.conftest import NODE, MakeCluster, events, wait_event

AMPERE_AND_HOPPER_OFF = "A100-SXM4-80GB:1:mig-off,H100-SXM5-80GB:1:mig-off"


def status(c: SimCluster) -> list[dict[str, object]]:
    return json.loads(c.api.get_node(NODE)["metadata"]["annotations"][GPUS_ANNOTATION])  # type: ignore[no-any-return]


def test_per_gpu_modes_from_the_node_config(make_cluster: MakeCluster) -> None:
    modes = (GpuMode("hami-core", index=1),)
    with make_cluster(gpu_modes=modes) as c:
        assert c.agent is not None
        snap = c.agent.snapshot()
        assert [g.managed for g in snap.gpus] == [True, False]
        assert "sets GPU 1 to 'hami-core'" in snap.gpus[1].reason
        assert {d.id.rsplit("-", 1)[0] for d in c.kubelet.devices(RESOURCE_NAME)} == {snap.gpus[0].uuid}
        assert [(s["mode"], s["managed"]) for s in status(c)] == [("mig", True), ("hami-core", False)]
        register = json.loads(c.api.get_node(NODE)["metadata"]["annotations"]["hami.io/node-nvidia-register"])
        assert [d["id"] for d in register] == [snap.gpus[0].uuid]


def test_a_gpu_can_opt_into_mig_on_a_hami_core_node(make_cluster: MakeCluster) -> None:
    with NvmlBackend(NvmlSim("A100-SXM4-80GB:2")) as backend:  # same seed, same UUIDs as the cluster's
        uuid = backend.devices()[1].uuid
    with make_cluster(mode="hami-core", gpu_modes=(GpuMode("mig", uuid=uuid),)) as c:
        assert c.agent is not None
        assert [g.managed for g in c.agent.snapshot().gpus] == [False, True]
        assert "node operating mode is 'hami-core'" in c.agent.snapshot().gpus[0].reason


def test_without_the_flag_nothing_changes_and_the_reason_says_what_to_do(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus=AMPERE_AND_HOPPER_OFF) as c:
        assert c.agent is not None
        assert c.sim.calls.get("nvmlDeviceSetMigMode", 0) == 0
        for g in c.agent.snapshot().gpus:
            assert not g.managed and g.mig_mode == "disabled"
            assert "nvidia-smi -i" in g.reason and "--manage-mig-mode" in g.reason
        assert events(c, about=NODE) == []


def test_enable_on_idle_gpus_hopper_at_once_ampere_pending_until_reset(make_cluster: MakeCluster,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hami_mig")
    with make_cluster(sim_gpus=AMPERE_AND_HOPPER_OFF, manage_mig_mode=True) as c:
        assert c.agent is not None
        a100, h100 = c.agent.snapshot().gpus
        assert h100.managed and h100.mig_mode == "enabled"  # Hopper switches without a reset
        assert not a100.managed and a100.mig_mode == "pending"  # the metric-visible field
        assert "reset" in a100.reason and "never resets" in a100.reason
        assert [s["migMode"] for s in status(c)] == ["pending", "enabled"]
        assert "MIG mode enable on GPU 0" in wait_event(c, "MIGModePending", about=NODE)["message"]
        assert "enabled on GPU 1" in wait_event(c, "MIGModeEnabled", about=NODE)["message"]
        assert any("is pending" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        assert len(c.kubelet.devices(RESOURCE_NAME)) == c.config.split_count  # the H100 is served now

        c.reconcile()
        c.reconcile()
        assert c.sim.calls["nvmlDeviceSetMigMode"] == 2  # once per GPU, not once per pass
        assert len(events(c, reason="MIGModePending")) == 1
        assert not any("Reset" in name for name in c.sim.calls)  # hami-mig never resets a GPU

        c.sim.reset_gpu(0)  # the administrator resets the idle A100
        c.reconcile()
        assert all(g.managed for g in c.agent.snapshot().gpus)
        assert c.wait(lambda: any("is now enabled" in e["message"] for e in events(c, reason="MIGModeEnabled")))
        c.submit("p", {"nvidia.com/gpumem": 70000, "nvidia.com/gpu": 2})
        assert c.admit("p").ok


def test_a_gpu_with_processes_is_not_switched(make_cluster: MakeCluster) -> None:
    def busy(c: SimCluster) -> None:
        c.sim.set_gpu_processes(0, [4242])

    from hami_mig.testing.nvmlsim.caps import add_fake_process

    with make_cluster(sim_gpus="H100-SXM5-80GB:1:mig-off", manage_mig_mode=True, before_start=busy) as c:
        add_fake_process(c.config.proc_root, 4242, "python3")
        c.reconcile()
        assert c.agent is not None
        (gpu,) = c.agent.snapshot().gpus
        assert gpu.mig_mode == "disabled" and not gpu.managed
        assert "processes run on it: " in gpu.reason and "(pid 4242)" in gpu.reason
        assert c.sim.calls.get("nvmlDeviceSetMigMode", 0) == 0
        wait_event(c, "MIGModeWaiting", about=NODE)

        c.sim.set_gpu_processes(0, [])
        c.reconcile()
        assert c.agent.snapshot().gpus[0].managed


def test_disable_only_when_explicit_and_idle_after_removing_free_instances(make_cluster: MakeCluster) -> None:
    off = (GpuMode("hami-core", index=0),)
    with make_cluster(sim_gpus="H100-SXM5-80GB:1", manage_mig_mode=True) as c:  # no gpus list: nothing disabled
        assert c.agent is not None and c.agent.snapshot().gpus[0].managed
        assert c.sim.calls.get("nvmlDeviceSetMigMode", 0) == 0
    with make_cluster(sim_gpus="H100-SXM5-80GB:1", manage_mig_mode=True, gpu_modes=off,
                      before_start=lambda c: c.sim.add_instance(0, "1g.10gb", 0, pids=[7])) as c:
        assert c.agent is not None
        (gpu,) = c.agent.snapshot().gpus
        assert gpu.mig_mode == "enabled" and "waits" in gpu.reason and "1g.10gb@0" in gpu.reason
        mig = gpu.instances[0].mig_uuid
        assert mig is not None
        c.sim.make_idle(mig)
        c.reconcile()
        (gpu,) = c.agent.snapshot().gpus
        assert gpu.mig_mode == "disabled" and gpu.instances == ()
        assert "disabled on GPU 0" in wait_event(c, "MIGModeDisabled", about=NODE)["message"]


def test_disable_waits_for_pods_holding_instances(make_cluster: MakeCluster) -> None:
    held: dict[str, str] = {}

    def leftover(c: SimCluster) -> None:  # an instance a pod got before the node config changed
        held["mig"] = c.sim.add_instance(0, "1g.10gb", 0, pids=[7])  # busy until the pod shows up

    off = (GpuMode("hami-core", index=0),)
    with make_cluster(sim_gpus="H100-SXM5-80GB:1", manage_mig_mode=True, gpu_modes=off, before_start=leftover) as c:
        gpu_uuid = c.backend.devices()[0].uuid
        record = {"0": [{"gpu": gpu_uuid, "mig": held["mig"], "profile": "1g.10gb", "start": 0}]}
        c.submit("p", {"nvidia.com/gpumem": 8000}, annotations={INSTANCES_ANNOTATION: json.dumps(record)})
        c.api.set_pod_phase("default", "p", "Running")
        c.sim.make_idle(held["mig"])
        c.reconcile()
        assert c.agent is not None
        (gpu,) = c.agent.snapshot().gpus
        assert gpu.mig_mode == "enabled" and "pods hold its MIG instances (default/p#0)" in gpu.reason
        assert c.sim.calls.get("nvmlDeviceSetMigMode", 0) == 0

        c.finish("p")
        c.reconcile()
        assert c.agent.snapshot().gpus[0].mig_mode == "disabled"
