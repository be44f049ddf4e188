"""Bind through the fake API server (real HTTP, real kubernetes client): annotations, Binding, the node lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hami_mig.kube.annotations import (
    BIND_PHASE,
    BIND_TIME,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    NODE_LOCK,
    NODE_REGISTER,
    VGPU_NODE,
    VGPU_TIME,
    decode_pod_devices,
)
from hami_mig.kube.nodelock import NodeLock
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import ApiSource
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest
from tests.scheduler.helpers import AGENT, agent_allocate, extender_on, gpu_uuid, post, register

NODE = "gpu-1"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.add_node(NODE, annotations={NODE_REGISTER: register(NODE, 2), **AGENT})
        yield server


def submit(api: FakeApiServer, name: str, mem: int = 8000, count: int | None = None) -> dict[str, Any]:
    limits = {"nvidia.com/gpumem": str(mem)}
    if count is not None:
        limits["nvidia.com/gpu"] = str(count)
    return api.add_pod(pod_manifest(name, limits=limits))


def bind_args(pod: dict[str, Any], node: str = NODE) -> dict[str, str]:
    meta = pod["metadata"]
    return {"podName": meta["name"], "podNamespace": meta["namespace"], "podUID": meta["uid"], "node": node}


def lock_of(api: FakeApiServer, node: str = NODE) -> NodeLock | None:
    text = (api.get_node(node)["metadata"].get("annotations") or {}).get(NODE_LOCK)
    return NodeLock.decode(text) if text else None


def test_filter_then_bind_over_http(api: FakeApiServer) -> None:
    pod = submit(api, "p1", 8000, count=2)
    with ExtenderServer(extender_on(api)) as server:
        status, out = post(server.url + "/filter", {"pod": pod, "nodenames": [NODE]})
        assert status == 200 and out["nodenames"] == [NODE], out
        before = int(time.time())
        status, out = post(server.url + "/bind", bind_args(pod))
        assert status == 200 and out == {"error": ""}
    bound = api.get_pod("default", "p1")
    ann, labels = bound["metadata"]["annotations"], bound["metadata"]["labels"]
    g0, g1 = gpu_uuid(NODE, 0), gpu_uuid(NODE, 1)
    assert ann[DEVICES_TO_ALLOCATE] == f"{g0}[1-1],NVIDIA,9984,28:{g1}[1-1],NVIDIA,9984,28:;"
    assert ann[DEVICES_ALLOCATED] == ann[DEVICES_TO_ALLOCATE]
    assert ann[VGPU_NODE] == NODE and labels[VGPU_NODE] == NODE
    assert ann[BIND_PHASE] == "allocating"
    assert before <= int(ann[VGPU_TIME]) == int(ann[BIND_TIME]) <= before + 5
    assert bound["spec"]["nodeName"] == NODE
    held = lock_of(api)
    assert held is not None and held.held_by("default", "p1")  # the agent releases it after Allocate


def test_pod_without_gpu_is_bound_without_lock_or_annotations(api: FakeApiServer) -> None:
    """LockNode (pkg/device/nvidia/device.go, v2.9.0) locks only for a pod with a GPU request; hami-mig also writes
    no allocation annotations for it (no agent will ever finish an allocation that is not there)."""
    pod = api.add_pod(pod_manifest("cpu", limits={"cpu": "1"}))
    assert extender_on(api).bind(bind_args(pod)) == {"error": ""}
    bound = api.get_pod("default", "cpu")
    assert bound["spec"]["nodeName"] == NODE
    assert BIND_PHASE not in (bound["metadata"].get("annotations") or {})
    assert lock_of(api) is None


def test_lock_serializes_binds_until_the_agent_allocates(api: FakeApiServer) -> None:
    extender = extender_on(api, lock_wait_s=0.3)
    first, second = submit(api, "a"), submit(api, "b")
    assert extender.bind(bind_args(first)) == {"error": ""}
    started = time.monotonic()
    out = extender.bind(bind_args(second))
    assert time.monotonic() - started >= 0.3
    assert "locked by default/a" in out["error"]
    assert api.get_pod("default", "b")["spec"].get("nodeName") is None
    assert DEVICES_TO_ALLOCATE not in (api.get_pod("default", "b")["metadata"].get("annotations") or {})
    agent_allocate(api, "default", "a")
    assert lock_of(api) is None
    assert extender.bind(bind_args(second)) == {"error": ""}
    a = decode_pod_devices(api.get_pod("default", "a")["metadata"]["annotations"][DEVICES_ALLOCATED])
    b = decode_pod_devices(api.get_pod("default", "b")["metadata"]["annotations"][DEVICES_ALLOCATED])
    assert a[0][0].uuid != b[0][0].uuid  # [1-1] then [1-2]: never the same slot


def test_a_finished_holder_no_longer_blocks(api: FakeApiServer) -> None:
    """The agent allocated but did not release (older agents): bind-phase success frees the lock."""
    extender = extender_on(api, lock_wait_s=0.2)
    first, second = submit(api, "a"), submit(api, "b")
    assert extender.bind(bind_args(first)) == {"error": ""}
    api.patch_pod("default", "a", {"metadata": {"annotations": {BIND_PHASE: "success"}}})
    assert extender.bind(bind_args(second)) == {"error": ""}
    held = lock_of(api)
    assert held is not None and held.held_by("default", "b")
    events = api.events("default", involved_name="b")
    assert any(e["reason"] == "NodeLockTakenOver" and "is allocated" in e["message"] for e in events)


def test_expired_lock_of_a_crashed_agent_is_taken_over(api: FakeApiServer) -> None:
    config = SchedulerConfig(lock_timeout=timedelta(seconds=1), lock_wait_s=4.0)
    extender = extender_on(api, config)
    first, second = submit(api, "a"), submit(api, "b")
    assert extender.bind(bind_args(first)) == {"error": ""}
    locked_at = lock_of(api)
    assert locked_at is not None
    # The agent crashed: "a" stays allocating forever. "b" waits until the lock is older than 1 s, then takes it.
    out = extender.bind(bind_args(second))
    assert out == {"error": ""}
    assert datetime.now(UTC) - locked_at.locked_at > timedelta(seconds=1)
    held = lock_of(api)
    assert held is not None and held.held_by("default", "b")


def test_old_lock_from_before_is_taken_over_at_once(api: FakeApiServer) -> None:
    old = NodeLock.now("default", "ghost", datetime.now(UTC) - timedelta(minutes=6)).encode()
    api.patch_node(NODE, {"metadata": {"annotations": {NODE_LOCK: old}}})
    pod = submit(api, "p")
    assert extender_on(api, lock_wait_s=0.1).bind(bind_args(pod)) == {"error": ""}


def test_unexpired_lock_of_a_live_holder_is_respected(api: FakeApiServer) -> None:
    holder = api.add_pod(pod_manifest("holder", annotations={BIND_PHASE: "allocating", VGPU_NODE: NODE}))
    api.patch_node(NODE, {"metadata": {"annotations": {NODE_LOCK: NodeLock.now("default", "holder").encode()}}})
    out = extender_on(api, lock_wait_s=0.1).bind(bind_args(submit(api, "p")))
    assert "locked by default/holder" in out["error"]
    api.delete_pod("default", holder["metadata"]["name"])  # the holder is gone: its lock protects nothing
    assert extender_on(api, lock_wait_s=0.1).bind(bind_args(api.get_pod("default", "p"))) == {"error": ""}


def test_failed_binding_releases_the_lock_and_removes_the_annotations(api: FakeApiServer) -> None:
    pod = submit(api, "p")
    api.fail_next(1, 500, method="POST", path="/binding", message="etcd is on fire")
    out = extender_on(api).bind(bind_args(pod))
    assert "etcd is on fire" in out["error"]
    assert lock_of(api) is None
    after = api.get_pod("default", "p")
    assert not set(after["metadata"].get("annotations") or {}) & {DEVICES_TO_ALLOCATE, BIND_PHASE, VGPU_NODE}
    assert VGPU_NODE not in (after["metadata"].get("labels") or {})
    assert after["spec"].get("nodeName") is None


def test_pod_that_no_longer_fits_is_refused_and_the_lock_released(api: FakeApiServer) -> None:
    extender = extender_on(api)
    big = [submit(api, f"big{i}", 40000) for i in range(3)]
    assert extender.bind(bind_args(big[0])) == {"error": ""}
    agent_allocate(api, "default", "big0")
    assert extender.bind(bind_args(big[1])) == {"error": ""}
    agent_allocate(api, "default", "big1")
    out = extender.bind(bind_args(big[2]))
    assert "no longer fits" in out["error"] and "in use: 7g.40gb@0" in out["error"]
    assert lock_of(api) is None


def test_bind_refuses_replaced_bound_and_missing_pods(api: FakeApiServer) -> None:
    extender = extender_on(api)
    pod = submit(api, "p")
    assert "was replaced" in extender.bind({**bind_args(pod), "podUID": "other"})["error"]
    assert "not found" in extender.bind({**bind_args(pod), "podName": "nope"})["error"]
    api.bind_pod("default", "p", "elsewhere")
    assert "already bound to elsewhere" in extender.bind(bind_args(pod))["error"]
    assert lock_of(api) is None


def test_concurrent_binds_on_one_node_serialize_through_the_lock(api: FakeApiServer) -> None:
    """Two extender replicas (no shared memory), 8 binding threads, one node: every pod's allocation is
    written while its pod holds the lock, and no two pods are promised the same slot."""
    replicas = [extender_on(api, lock_wait_s=20.0), extender_on(api, lock_wait_s=20.0)]
    pods = [submit(api, f"c{i}", 4000) for i in range(8)]
    stop = threading.Event()

    def agent() -> None:
        while not stop.is_set():
            held = lock_of(api)
            if held is not None and held.pod:
                pod = api.get_pod(held.namespace, held.pod)
                if pod["spec"].get("nodeName") and pod["metadata"]["annotations"].get(BIND_PHASE) == "allocating":
                    time.sleep(0.02)  # the kubelet admits the pod, Allocate runs
                    agent_allocate(api, held.namespace, held.pod)
            time.sleep(0.005)

    results: dict[str, dict[str, str]] = {}

    def bind(i: int) -> None:
        results[pods[i]["metadata"]["name"]] = replicas[i % 2].bind(bind_args(pods[i]))

    agent_thread = threading.Thread(target=agent, daemon=True)
    agent_thread.start()
    threads = [threading.Thread(target=bind, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    api.wait_for(lambda: all(p["metadata"]["annotations"].get(BIND_PHASE) == "success" for p in api.pods(NODE))
                 and len(api.pods(NODE)) == 8, timeout=10)
    stop.set()
    agent_thread.join(timeout=5)
    assert all(r == {"error": ""} for r in results.values()), results

    # Walk the API server's history: each pod's reservation was written while that pod held the lock.
    holder = ""
    checked = 0
    for change in api.store.history:
        if change.resource == "nodes":
            text = (change.new["metadata"].get("annotations") or {}).get(NODE_LOCK)
            holder = NodeLock.decode(text).pod if text else ""
        elif change.resource == "pods" and change.old is not None:
            was = (change.old["metadata"].get("annotations") or {}).get(BIND_PHASE)
            now = (change.new["metadata"].get("annotations") or {}).get(BIND_PHASE)
            if now == "allocating" and was is None:
                name = change.new["metadata"]["name"]
                assert holder == name, f"{name} wrote its reservation while {holder!r} held the lock"
                checked += 1
    assert checked == 8
    slots = [d.uuid for p in api.pods(NODE)
             for c in decode_pod_devices(p["metadata"]["annotations"][DEVICES_ALLOCATED]) for d in c]
    assert len(slots) == len(set(slots)) == 8


def test_filter_reads_the_cluster_and_reports_an_unreachable_api(api: FakeApiServer) -> None:
    extender: Extender = extender_on(api)
    pod = submit(api, "p")
    out = extender.filter({"pod": pod, "nodenames": [NODE, "ghost"]})
    assert out["nodenames"] == [NODE] and "not found" in out["failedNodes"]["ghost"]
    api.down("503")
    try:
        assert isinstance(extender.source, ApiSource)
        extender.source.invalidate()
        out = extender.filter({"pod": pod, "nodenames": [NODE]})
        assert out["nodenames"] == [] and "cannot read the cluster" in out["error"]
    finally:
        api.up()
