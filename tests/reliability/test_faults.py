"""NVML, API server and kubelet faults around the real agent: nothing in use is touched, nothing leaks.

The table printed at the end (pytest -s) is the one docs/reliability.md shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pynvml
import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.annotations import BIND_PHASE, DEVICES_TO_ALLOCATE, NODE_LOCK, NODE_REGISTER
from hami_mig.kube.nodelock import NodeLock
from hami_mig.testing.cluster import SimCluster

NODE = "faults"
ROWS: list[str] = []  # one per fault injected


@dataclass
class Tally:
    """What the checks found, summed over the faults: the summary line under the table is printed from it."""

    checked: int = 0  # faults after which the running pod's instance and every leak were checked
    lost: int = 0  # a running pod's instance lost or moved
    leaks: int = 0


TALLY = Tally()


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    config = AgentConfig(node_name=NODE, reconcile_interval_s=3600, events=False, policy="best-fit",
                         geometries="any", in_use_backoff_s=(0.05,))
    with SimCluster(config, sim_gpus="A100-SXM4-80GB:1") as c:
        yield c


def instances(c: SimCluster) -> dict[str, tuple[str, int]]:
    return {hw.mig_uuid: (hw.profile, hw.start) for d in c.backend.devices() for hw in d.instances if hw.mig_uuid}


def recorded(c: SimCluster) -> set[str]:
    out: set[str] = set()
    for pod in c.api.pods(NODE):
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        raw = pod["metadata"].get("annotations", {}).get(INSTANCES_ANNOTATION)
        if raw:
            out.update(h["mig"] for held in json.loads(raw).values() for h in held)
    return out


def busy_gpu(c: SimCluster) -> tuple[str, set[str]]:
    """A running 3g.40gb pod and three free 1g.10gb: a 30 GB pod needs destroys and creates."""
    c.submit("keep", {"nvidia.com/gpumem": 30000})
    keep = c.admit("keep").devices[0]
    for i in range(3):
        c.submit(f"s{i}", {"nvidia.com/gpumem": 8000})
        assert c.admit(f"s{i}").ok
    for i in range(3):
        c.finish(f"s{i}")
    return keep, set(instances(c)) - {keep}


def check(c: SimCluster, keep: str, before: dict[str, tuple[str, int]], free_before: set[str], label: str,
          ok: bool) -> None:
    now = instances(c)
    # A free instance may come back under a new MIG UUID (a failed GI destroy re-creates its CI); what
    # must not appear is an unrecorded instance at a placement that was not free capacity before.
    free_places = {before[u] for u in free_before}
    leaks = {u: now[u] for u in set(now) - recorded(c) if now[u] not in free_places}
    TALLY.checked += 1
    TALLY.lost += now.get(keep) != before[keep]
    TALLY.leaks += len(leaks)
    assert now.get(keep) == before[keep], f"{label}: the running pod's instance moved or vanished"
    assert not leaks, f"{label}: instances nobody holds were left behind: {leaks}"
    ROWS.append(f"{label:<44} {'admitted' if ok else 'refused cleanly':<16} running pod intact, 0 leaks")


NVML_ERRORS = {
    "IN_USE": pynvml.NVML_ERROR_IN_USE,
    "INSUFFICIENT_RESOURCES": pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES,
    "NO_PERMISSION": pynvml.NVML_ERROR_NO_PERMISSION,
    "GPU_IS_LOST": pynvml.NVML_ERROR_GPU_IS_LOST,
    "UNKNOWN": pynvml.NVML_ERROR_UNKNOWN,
}


@pytest.mark.parametrize("kind", ["destroy_ci", "destroy_gi", "create_gi", "create_ci"])
@pytest.mark.parametrize("error", sorted(NVML_ERRORS))
def test_each_mutating_call_failing(cluster: SimCluster, kind: str, error: str) -> None:
    keep, free_before = busy_gpu(cluster)
    before = instances(cluster)
    cluster.sim.fail(kind, 1, NVML_ERRORS[error])
    cluster.submit("big", {"nvidia.com/gpumem": 30000})
    result = cluster.admit("big")
    check(cluster, keep, before, free_before, f"NVML {kind} fails with {error}", result.ok)
    if not result.ok:
        assert "NVML_ERROR_" in result.error or "NVML" in result.error
    else:
        cluster.finish("big")  # the GPU is full with it: make room for the next pod
    cluster.submit("next", {"nvidia.com/gpumem": 8000})
    assert cluster.admit("next").ok, "the agent did not recover after the fault"


def test_gpu_lost_mid_plan(cluster: SimCluster) -> None:
    keep, free_before = busy_gpu(cluster)
    before = instances(cluster)
    cluster.sim.on_call("destroy_gi", 1, lambda: cluster.sim.lose_gpu(0))
    cluster.submit("big", {"nvidia.com/gpumem": 30000})
    result = cluster.admit("big")
    assert not result.ok
    cluster.sim.lose_gpu(0, False)
    check(cluster, keep, before, free_before, "GPU lost in the middle of a plan", result.ok)


def test_instance_becomes_busy_between_plan_and_apply(cluster: SimCluster) -> None:
    keep, free_before = busy_gpu(cluster)
    before = instances(cluster)
    victims = sorted(free_before)
    cluster.sim.on_call("destroy_ci", 1, lambda: [cluster.sim.make_busy(u) for u in victims])
    cluster.submit("big", {"nvidia.com/gpumem": 30000})
    result = cluster.admit("big")
    now = instances(cluster)
    for uuid in victims:
        assert uuid in now, "an instance that started running processes was destroyed"
    check(cluster, keep, before, free_before, "free instance turns busy before its destroy", result.ok)


def test_api_server_down_at_start_then_back(cluster: SimCluster) -> None:
    cluster.stop_agent()
    cluster.api.down()
    agent = cluster.start_agent()  # still registers with the kubelet and serves it
    ready, why = agent.ready()
    assert not ready and "API server" in why
    cluster.api.up()
    agent.reconcile()
    assert agent.ready()[0]
    assert NODE_REGISTER in cluster.api.get_node(NODE)["metadata"]["annotations"]
    ROWS.append(f"{'API server down at start, then back':<44} {'-':<16} kubelet served throughout, node published")


@pytest.mark.parametrize(("status", "label"), [(409, "conflict"), (500, "internal error"), (503, "unavailable")])
def test_record_write_fails(cluster: SimCluster, status: int, label: str) -> None:
    keep, free_before = busy_gpu(cluster)
    before = instances(cluster)
    cluster.api.fail_next(1, status, method="PATCH", path="/api/v1/namespaces/default/pods/big")
    cluster.submit("big", {"nvidia.com/gpumem": 30000})
    result = cluster.admit("big")
    assert not result.ok and "removed again" in result.error
    check(cluster, keep, before, free_before, f"API answers {status} ({label}) to the record write", result.ok)
    cluster.submit("big2", {"nvidia.com/gpumem": 30000})
    assert cluster.admit("big2").ok


def test_slow_api_server(cluster: SimCluster) -> None:
    cluster.api.delay_next(2, 2.0)
    cluster.submit("slow", {"nvidia.com/gpumem": 8000})
    assert cluster.admit("slow").ok
    ROWS.append(f"{'API server 2 s slow on two requests':<44} {'admitted':<16} within the read timeout")


def test_many_kubelet_restarts(cluster: SimCluster) -> None:
    for _ in range(5):
        cluster.kubelet.restart()
    assert cluster.kubelet.wait_for_registration("nvidia.com/gpu", timeout=5)
    assert cluster.wait(lambda: len(cluster.kubelet.devices("nvidia.com/gpu")) == 10 and all(
        d.healthy for d in cluster.kubelet.devices("nvidia.com/gpu")), 10)
    cluster.submit("after", {"nvidia.com/gpumem": 8000})
    assert cluster.admit("after").ok
    ROWS.append(f"{'5 kubelet restarts in a row':<44} {'admitted':<16} re-registered each time")


def test_unreadable_record_protects_every_instance(cluster: SimCluster) -> None:
    busy_gpu(cluster)
    cluster.api.patch_pod("default", "keep", {"metadata": {"annotations": {INSTANCES_ANNOTATION: "{garbage"}}})
    before = instances(cluster)
    cluster.submit("big", {"nvidia.com/gpumem": 30000})
    result = cluster.admit("big")
    assert not result.ok
    assert instances(cluster) == before, "an instance was destroyed while a pod's record was unreadable"
    ROWS.append(f"{'a pod record is corrupt':<44} {'refused cleanly':<16} no instance reused or destroyed")


def test_corrupt_hami_pod_does_not_block_others(cluster: SimCluster) -> None:
    cluster.submit("broken", {"nvidia.com/gpumem": 8000},
                   annotations={BIND_PHASE: "allocating", DEVICES_TO_ALLOCATE: "GPU-x[1-,NVIDIA,;"})
    cluster.api.patch_node(NODE, {"metadata": {"annotations": {NODE_LOCK: NodeLock.now("default", "broken").encode()}}})
    cluster.submit("fine", {"nvidia.com/gpumem": 8000})
    # the kubelet admits the broken pod (it holds HAMi's node lock) and fails it; the next pod is unaffected
    first = cluster.admit("broken")
    assert not first.ok and DEVICES_TO_ALLOCATE in first.error
    assert cluster.api.get_pod("default", "broken")["metadata"]["annotations"][BIND_PHASE] == "failed"
    assert cluster.admit("fine").ok
    ROWS.append(f"{'a HAMi pod with a corrupt devices annotation':<44} {'refused cleanly':<16} other pods admitted")


@pytest.fixture(scope="module", autouse=True)
def print_fault_table() -> Iterator[None]:
    """After the module: the table and summary line docs/reliability.md shows, one row per fault test that ran
    (pytest -s)."""
    yield
    if ROWS:
        print("\n" + "\n".join(ROWS))
        print(f"\nFaults injected: {len(ROWS)}. Checked after {TALLY.checked} of them: instances a running pod held "
              f"that were lost or moved: {TALLY.lost}; leaks: {TALLY.leaks}.")
