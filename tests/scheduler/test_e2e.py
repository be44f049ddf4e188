"""End to end on the fakes: webhook -> extender filter/prioritize/bind over HTTP -> kubelet admission -> the real
node agent's Allocate (fake API server, fake kubelet over gRPC, NVML simulator): bind-phase success and a MIG
instance of the size the extender chose."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.annotations import BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, NODE_LOCK
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.testing.apiserver import pod_manifest
from hami_mig.testing.apiserver.patching import json_patch
from hami_mig.testing.cluster import SimCluster
from tests.scheduler.helpers import extender_on, post

NODE = "node-a"


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(AgentConfig(node_name=NODE, reconcile_interval_s=3600, events=False)) as c:
        yield c


@pytest.fixture
def server(cluster: SimCluster) -> Iterator[ExtenderServer]:
    with ExtenderServer(extender_on(cluster.api, lock_wait_s=1.0)) as s:
        yield s


def create_through_webhook(cluster: SimCluster, server: ExtenderServer, name: str, mem: int) -> dict[str, Any]:
    manifest = pod_manifest(name, limits={"nvidia.com/gpumem": str(mem)})
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": name, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "operation": "CREATE", "namespace": "default", "object": manifest}}
    status, out = post(server.url + "/webhook", review)
    assert status == 200 and out["response"]["allowed"], out
    mutated = json_patch(manifest, json.loads(base64.b64decode(out["response"]["patch"])))
    assert mutated["spec"]["schedulerName"] == "hami-scheduler"
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    return cluster.api.add_pod(mutated)


def schedule(cluster: SimCluster, server: ExtenderServer, pod: dict[str, Any]) -> None:
    """What kube-scheduler does with the extender: filter, prioritize, bind."""
    status, out = post(server.url + "/filter", {"pod": pod, "nodenames": [NODE]})
    assert status == 200 and out["nodenames"] == [NODE], out
    status, scores = post(server.url + "/prioritize", {"pod": pod, "nodenames": [NODE]})
    assert status == 200 and scores[0]["host"] == NODE and 0 <= scores[0]["score"] <= 10
    meta = pod["metadata"]
    status, out = post(server.url + "/bind", {"podName": meta["name"], "podNamespace": meta["namespace"],
                                              "podUID": meta["uid"], "node": NODE})
    assert status == 200 and out == {"error": ""}, out


def mig_instances(cluster: SimCluster) -> dict[str, tuple[str, int]]:
    return {hw.mig_uuid: (hw.profile, hw.start) for d in cluster.backend.devices() for hw in d.instances
            if hw.mig_uuid}


def test_webhook_filter_bind_allocate(cluster: SimCluster, server: ExtenderServer) -> None:
    pod = create_through_webhook(cluster, server, "train", 15000)
    schedule(cluster, server, pod)
    bound = cluster.api.get_pod("default", "train")
    assert bound["spec"]["nodeName"] == NODE
    chosen = bound["metadata"]["annotations"][DEVICES_TO_ALLOCATE]
    gpu0 = cluster.backend.devices()[0].uuid
    assert chosen == f"{gpu0}[1-1],NVIDIA,19968,28:;"  # HAMi's walk: the first 2g.20gb slot of geometry 1

    admitted = cluster.admit("train")
    assert admitted.ok, admitted.error
    ann = cluster.api.get_pod("default", "train")["metadata"]["annotations"]
    assert ann[BIND_PHASE] == "success"
    # eraseNextDeviceTypeFromAnnotation (plugin/util.go, v2.9.0) leaves ";;" for a one-container value "X:;"
    assert ann[DEVICES_TO_ALLOCATE] == ";;" and ann[DEVICES_ALLOCATED] == chosen
    held = json.loads(ann[INSTANCES_ANNOTATION])["0"][0]
    assert held["profile"] == "2g.20gb" and held["gpu"] == gpu0
    assert mig_instances(cluster)[admitted.devices[0]] == ("2g.20gb", held["start"])

    # The next pod sees that instance as taken (from the record), gets the next slot and its own instance.
    second = create_through_webhook(cluster, server, "infer", 15000)
    schedule(cluster, server, second)
    assert f"{gpu0}[1-2]" in cluster.api.get_pod("default", "infer")["metadata"]["annotations"][DEVICES_TO_ALLOCATE]
    again = cluster.admit("infer")
    assert again.ok, again.error
    assert again.devices[0] != admitted.devices[0]
    assert mig_instances(cluster)[again.devices[0]][0] == "2g.20gb"


def test_full_node_is_filtered_out_with_the_reason(cluster: SimCluster, server: ExtenderServer) -> None:
    for name in ("w0", "w1"):
        pod = create_through_webhook(cluster, server, name, 70000)
        schedule(cluster, server, pod)
        assert cluster.admit(name).ok
    late = create_through_webhook(cluster, server, "late", 1000)
    status, out = post(server.url + "/filter", {"pod": late, "nodenames": [NODE]})
    assert status == 200 and out["nodenames"] == []
    assert "in use: 7g.80gb@0" in out["failedNodes"][NODE]
    cluster.finish("w0")
    deadline = time.monotonic() + 5  # the extender's picture of the cluster is at most --cache-ttl (1 s) old
    while not out["nodenames"] and time.monotonic() < deadline:
        time.sleep(0.1)
        out = post(server.url + "/filter", {"pod": late, "nodenames": [NODE]})[1]
    assert out["nodenames"] == [NODE]


def test_agent_releases_the_node_lock_after_allocate(cluster: SimCluster, server: ExtenderServer) -> None:
    """The handshake's other half: bind leaves the lock held, the agent's Allocate releases it."""
    pod = create_through_webhook(cluster, server, "p", 8000)
    schedule(cluster, server, pod)
    assert NODE_LOCK in cluster.api.get_node(NODE)["metadata"]["annotations"]
    assert cluster.admit("p").ok
    assert NODE_LOCK not in cluster.api.get_node(NODE)["metadata"]["annotations"]


def test_node_lock_is_kept_until_the_pods_last_container_is_allocated(cluster: SimCluster,
                                                                       server: ExtenderServer) -> None:
    """podAllocationTrySuccess (plugin/util.go, v2.9.0): the lock goes, with bind-phase success, only once the
    refreshed to-allocate annotation names no NVIDIA device, i.e. after the pod's last GPU container."""
    manifest = pod_manifest("two", limits={"nvidia.com/gpumem": "8000", "nvidia.com/gpu": "1"})
    manifest["spec"]["containers"].append({"name": "second", "image": "busybox", "resources": {
        "limits": {"nvidia.com/gpumem": "8000", "nvidia.com/gpu": "1"}}})
    schedule(cluster, server, cluster.api.add_pod(manifest))
    assert cluster.admit("two", count=1).ok  # the kubelet's Allocate for container 0
    ann = cluster.api.get_pod("default", "two")["metadata"]["annotations"]
    assert ann[BIND_PHASE] == "allocating"
    assert NODE_LOCK in cluster.api.get_node(NODE)["metadata"]["annotations"]  # HAMi may not bind the next pod yet
    assert cluster.admit("two", count=1).ok  # container 1
    ann = cluster.api.get_pod("default", "two")["metadata"]["annotations"]
    assert ann[BIND_PHASE] == "success" and ann[DEVICES_TO_ALLOCATE] == ";;;;"  # ";" per entry, as HAMi erases
    assert NODE_LOCK not in cluster.api.get_node(NODE)["metadata"]["annotations"]


def test_hami_series_are_computed_from_the_pods_allocation_records(cluster: SimCluster,
                                                                   server: ExtenderServer) -> None:
    """Collect (cmd/scheduler/metrics.go, v2.9.0) sums what vgpu-devices-allocated gives each device; its slot
    series exist only while a slot is held. The agent's scrape says the same."""
    from hami_mig.metrics import build_registry
    from tests.metrics.expo import values

    schedule(cluster, server, create_through_webhook(cluster, server, "train", 15000))
    assert cluster.admit("train").ok
    gpu0 = cluster.backend.devices()[0].uuid
    reg = build_registry(cluster.agent.snapshot, process=False)  # type: ignore[union-attr]
    assert values(reg, "vGPUMemoryAllocated", "podname", "containeridx", "deviceuuid") == {
        ("train", "0", f"{gpu0}[1-1]"): float(19968 * 2**20)}
    assert values(reg, "vGPUCoreAllocated", "deviceuuid") == {(f"{gpu0}[1-1]",): 28.0}
    assert values(reg, "GPUDeviceMemoryAllocated", "deviceidx", "devicecores") == {
        ("0", "28"): float(19968 * 2**20), ("1", "0"): 0.0}
    assert values(reg, "hami_gpu_shared_count", "device_index") == {("0",): 1.0, ("1",): 0.0}
    slots = values(reg, "nodeGPUMigInstance", "deviceidx", "migname")
    assert {k for k, v in slots.items() if v == 1.0} == {("0", "2g.20gb-1")} and {k[0] for k in slots} == {"0"}
    cluster.finish("train")
    cluster.reconcile()
    assert values(reg, "nodeGPUMigInstance", "deviceidx", "migname") == {}  # the last pod is gone
