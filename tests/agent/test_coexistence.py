"""Beside the GPU Operator: where its MIG manager owns the node, hami-mig steps back instead of fighting it."""

from __future__ import annotations

import json

import pytest

from hami_mig.agent.coexist import DEPLOY_MIG_MANAGER, MIG_CONFIG, MIG_CONFIG_STATE, MIG_STRATEGY, mig_manager_reason
from hami_mig.agent.config import RESOURCE_NAME
from hami_mig.agent.node import GPUS_ANNOTATION
from hami_mig.plugin import AllocationError
from tests.agent.conftest import NODE, MakeCluster, events, wait_event

MANAGED_BY_OPERATOR = {MIG_CONFIG: "all-1g.10gb", MIG_CONFIG_STATE: "success", MIG_STRATEGY: "single"}


@pytest.mark.parametrize(
    ("labels", "steps_back"),
    [
        ({}, False),
        ({"nvidia.com/gpu.present": "true"}, False),
        ({MIG_CONFIG: "all-disabled"}, True),
        ({MIG_CONFIG_STATE: "pending"}, True),
        ({MIG_STRATEGY: "mixed"}, True),
        ({**MANAGED_BY_OPERATOR, DEPLOY_MIG_MANAGER: "true"}, True),
        ({**MANAGED_BY_OPERATOR, DEPLOY_MIG_MANAGER: "false"}, False),
    ],
)
def test_detection_from_node_labels(labels: dict[str, str], steps_back: bool) -> None:
    reason = mig_manager_reason(labels)
    assert (reason is not None) == steps_back
    if reason:
        assert "GPU Operator" in reason and "nvidia.com/gpu.deploy.mig-manager=false" in reason
        assert "--ignore-gpu-operator" in reason


def test_mig_manager_label_makes_hami_mig_step_back(make_cluster: MakeCluster) -> None:
    with make_cluster(node_labels=MANAGED_BY_OPERATOR) as c:
        assert c.agent is not None
        snap = c.agent.snapshot()
        assert [g.managed for g in snap.gpus] == [False, False]
        assert all("GPU Operator's MIG manager" in g.reason and "nvidia.com/mig.config=all-1g.10gb" in g.reason
                   for g in snap.gpus)
        assert c.kubelet.devices(RESOURCE_NAME) == ()  # nothing advertised
        node = c.api.get_node(NODE)
        status = json.loads(node["metadata"]["annotations"][GPUS_ANNOTATION])
        assert [s["managed"] for s in status] == [False, False] and "GPU Operator" in status[0]["reason"]
        e = wait_event(c, "MIGManagerDetected", about=NODE)
        assert e["type"] == "Warning" and e["involvedObject"]["kind"] == "Node"
        assert e["involvedObject"].get("namespace", "") == "" and e["metadata"]["namespace"] == "default"

        c.sim.reset_counts()
        c.submit("p", {"nvidia.com/gpumem": 8000})
        with pytest.raises(AllocationError, match="GPU Operator's MIG manager"):  # a kubelet with stale devices
            c.agent.allocate(["stale-0"])
        assert c.sim.mutating_calls() == 0
        c.reconcile()
        assert len(events(c, reason="MIGManagerDetected")) == 1  # once per change, not per pass


def test_removing_the_labels_hands_the_gpus_back(make_cluster: MakeCluster) -> None:
    with make_cluster(node_labels=MANAGED_BY_OPERATOR) as c:
        c.api.patch_node(NODE, {"metadata": {"labels": {DEPLOY_MIG_MANAGER: "false"}}})
        c.reconcile()
        assert c.agent is not None and all(g.managed for g in c.agent.snapshot().gpus)
        assert "hami-mig manages its GPUs again" in wait_event(c, "MIGManagerGone", about=NODE)["message"]
        c.submit("p", {"nvidia.com/gpumem": 8000})
        assert c.admit("p").ok

        c.api.patch_node(NODE, {"metadata": {"labels": {DEPLOY_MIG_MANAGER: None}}})  # the operator is back
        c.reconcile()
        assert not any(g.managed for g in c.agent.snapshot().gpus)


def test_ignore_gpu_operator_overrides_with_a_warning(make_cluster: MakeCluster) -> None:
    with make_cluster(node_labels=MANAGED_BY_OPERATOR, ignore_gpu_operator=True) as c:
        assert c.agent is not None and all(g.managed for g in c.agent.snapshot().gpus)
        e = wait_event(c, "GPUOperatorIgnored", about=NODE)
        assert e["type"] == "Warning" and "--ignore-gpu-operator" in e["message"]
        c.submit("p", {"nvidia.com/gpumem": 8000})
        assert c.admit("p").ok
