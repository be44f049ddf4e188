"""A HAMi pod with a corrupt `hami.io/vgpu-devices-to-allocate` is failed once, visibly, and never blocks the
node's other pods."""

from __future__ import annotations

import json

from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.annotations import BIND_PHASE, DEVICES_TO_ALLOCATE, NODE_LOCK
from hami_mig.kube.nodelock import NodeLock
from hami_mig.testing.cluster import SimCluster
from tests.agent.conftest import MakeCluster, wait_event

CORRUPT = "GPU-zz,NVIDIA,abc,x;;;:::"  # the value the defect was found with


def submit_corrupt(c: SimCluster, name: str) -> None:
    c.submit(name, {"nvidia.com/gpumem": 8000}, annotations={BIND_PHASE: "allocating", DEVICES_TO_ALLOCATE: CORRUPT})


def recorded(c: SimCluster, name: str) -> list[str]:
    raw = c.api.get_pod("default", name)["metadata"].get("annotations", {}).get(INSTANCES_ANNOTATION)
    return [h["mig"] for held in json.loads(raw).values() for h in held] if raw else []


def bind_phase(c: SimCluster, name: str) -> str | None:
    return c.api.get_pod("default", name)["metadata"].get("annotations", {}).get(BIND_PHASE)


def test_a_corrupt_hami_pod_beside_standalone_pods(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        submit_corrupt(c, "badhami8")
        for name in ("s1", "s2", "s3"):
            c.submit(name, {"nvidia.com/gpumem": 8000})
        for name in ("s1", "s2", "s3"):
            got = c.admit(name)
            assert got.ok, f"{name} was blocked by the corrupt HAMi pod: {got.error}"
            assert recorded(c, name) == list(got.devices), f"{name}'s allocation went to another pod"
        assert bind_phase(c, "badhami8") == "failed"
        assert recorded(c, "badhami8") == []
        event = wait_event(c, "MIGAllocateFailed", about="badhami8")
        assert event["type"] == "Warning"
        assert DEVICES_TO_ALLOCATE in event["message"] and "GPU-zz,NVIDIA,abc,x" in event["message"], event["message"]


def test_the_corrupt_pod_holding_the_node_lock_fails_its_own_allocate_only(make_cluster: MakeCluster) -> None:
    """The pod the HAMi lock names is the one the kubelet admits: that Allocate fails naming the field and value,
    the lock is released, and the next pod is served."""
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        submit_corrupt(c, "bad")
        c.api.patch_node(c.config.node_name, {"metadata": {"annotations": {
            NODE_LOCK: NodeLock.now("default", "bad").encode()}}})
        c.submit("fine", {"nvidia.com/gpumem": 8000})
        first = c.admit("bad")
        assert not first.ok
        assert DEVICES_TO_ALLOCATE in first.error and "GPU-zz,NVIDIA,abc,x" in first.error, first.error
        assert bind_phase(c, "bad") == "failed"
        assert NODE_LOCK not in c.api.get_node(c.config.node_name)["metadata"].get("annotations", {})
        assert c.backend.devices()[0].instances == (), "nothing may be created for a pod that cannot be served"
        then = c.admit("fine")
        assert then.ok and recorded(c, "fine") == list(then.devices)


def test_reconcile_fails_a_corrupt_pod_that_no_allocate_comes_for(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        submit_corrupt(c, "stuck")
        c.reconcile()
        assert bind_phase(c, "stuck") == "failed"
        wait_event(c, "MIGAllocateFailed", about="stuck")


def test_a_lock_holder_is_left_to_its_own_allocate_by_reconcile(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        submit_corrupt(c, "binding")
        c.api.patch_node(c.config.node_name, {"metadata": {"annotations": {
            NODE_LOCK: NodeLock.now("default", "binding").encode()}}})
        c.reconcile()
        assert bind_phase(c, "binding") == "allocating"
        assert not c.admit("binding").ok
        assert bind_phase(c, "binding") == "failed"
