"""The real agent between a fake API server (real HTTP), a fake kubelet (real gRPC) and the NVML simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.kube.annotations import BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, NODE_REGISTER
from hami_mig.testing.cluster import SimCluster

NODE = "node-a"


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(AgentConfig(node_name=NODE, reconcile_interval_s=3600, events=False)) as c:
        yield c


def instances(c: SimCluster) -> dict[str, tuple[str, int]]:
    """MIG UUID -> (profile, start) of every instance on the simulated GPUs."""
    return {hw.mig_uuid: (hw.profile, hw.start) for d in c.backend.devices() for hw in d.instances if hw.mig_uuid}


def test_pods_get_right_sized_instances_and_hami_annotations(cluster: SimCluster) -> None:
    cluster.submit("small", {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 8000})
    a = cluster.admit("small")
    assert a.ok, a.error
    assert a.envs["NVIDIA_VISIBLE_DEVICES"] == a.devices[0] and a.devices[0].startswith("MIG-")
    assert instances(cluster)[a.devices[0]][0] == "1g.10gb"
    ann = cluster.api.get_pod("default", "small")["metadata"]["annotations"]
    held = json.loads(ann[INSTANCES_ANNOTATION])["0"][0]
    assert held["mig"] == a.devices[0] and held["profile"] == "1g.10gb"
    gpu = held["gpu"]
    assert ann[DEVICES_ALLOCATED] == f"{gpu}[0-0],NVIDIA,9728,0:;"
    node = cluster.api.get_node(NODE)
    register = json.loads(node["metadata"]["annotations"][NODE_REGISTER])
    assert {d["mode"] for d in register} == {"mig"} and len(register) == 2
    assert node["status"]["capacity"]["nvidia.com/gpumem"] == str(2 * 81920)


@pytest.fixture
def any_cluster() -> Iterator[SimCluster]:
    config = AgentConfig(node_name=NODE, reconcile_interval_s=3600, events=False, policy="best-fit", geometries="any")
    with SimCluster(config) as c:
        yield c


def test_reshape_around_running_pods_never_touches_them(any_cluster: SimCluster) -> None:
    cluster = any_cluster
    held: dict[str, tuple[str, int]] = {}
    for n, mem in enumerate([8000, 8000, 15000, 30000, 35000]):
        cluster.submit(f"p{n}", {"nvidia.com/gpumem": mem})
        a = cluster.admit(f"p{n}")
        assert a.ok, a.error
        now = instances(cluster)
        for uuid, where in held.items():
            assert now.get(uuid) == where, f"{uuid} moved or vanished"
        held[a.devices[0]] = now[a.devices[0]]
    cluster.finish("p0")
    cluster.finish("p1", delete=True)
    cluster.reconcile()
    cluster.submit("big", {"nvidia.com/gpumem": 15000})
    a = cluster.admit("big")
    assert a.ok, a.error
    now = instances(cluster)
    for name in ("p2", "p3", "p4"):
        pod = cluster.api.get_pod("default", name)
        mig = json.loads(pod["metadata"]["annotations"][INSTANCES_ANNOTATION])["0"][0]["mig"]
        assert now.get(mig) == held[mig]


def test_free_instance_is_reused_without_nvml_ops(cluster: SimCluster) -> None:
    cluster.submit("a", {"nvidia.com/gpumem": 8000})
    first = cluster.admit("a")
    cluster.finish("a")
    calls = dict(cluster.sim.calls) if hasattr(cluster.sim, "calls") else None
    cluster.submit("b", {"nvidia.com/gpumem": 8000})
    second = cluster.admit("b")
    assert second.ok and second.devices == first.devices
    if calls is not None:
        created = {k: v for k, v in cluster.sim.calls.items() if "Create" in k or "Destroy" in k}
        assert created == {k: v for k, v in calls.items() if "Create" in k or "Destroy" in k}


@pytest.mark.parametrize(
    ("limits", "annotations", "needle"),
    [
        ({"nvidia.com/gpumem": 200000}, None, "largest profile is 7g.80gb (80896 MiB)"),
        ({"nvidia.com/gpumem": -5}, None, "nvidia.com/gpumem"),
        ({"nvidia.com/gpumem": "lots"}, None, "nvidia.com/gpumem"),
        ({"nvidia.com/gpumem-percentage": 150}, None, "nvidia.com/gpumem-percentage"),
        ({"nvidia.com/gpumem": 1000}, {"nvidia.com/vgpu-mode": "hami-core"}, "hami-core"),
    ],
)
def test_bad_requests_get_errors_naming_value_and_limit(
    cluster: SimCluster, limits: dict[str, object], annotations: dict[str, str] | None, needle: str
) -> None:
    cluster.submit("bad", limits, annotations=annotations)  # type: ignore[arg-type]
    before = instances(cluster)
    a = cluster.admit("bad", count=1)
    assert not a.ok and needle in a.error
    assert instances(cluster) == before


def test_count_above_gpus_is_refused(cluster: SimCluster) -> None:
    cluster.submit("wide", {"nvidia.com/gpu": 3, "nvidia.com/gpumem": 1000})
    a = cluster.admit("wide")
    assert not a.ok and "the node has 2 GPUs" in a.error


def test_hami_scheduler_slot_is_realized_and_phase_set(cluster: SimCluster) -> None:
    gpu = cluster.backend.devices()[1].uuid
    chosen = f"{gpu}[1-1],NVIDIA,19968,28:;"
    cluster.submit("hs", {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 15000},
                   annotations={BIND_PHASE: "allocating", DEVICES_TO_ALLOCATE: chosen, DEVICES_ALLOCATED: chosen})
    a = cluster.admit("hs")
    assert a.ok, a.error
    assert instances(cluster)[a.devices[0]][0] == "2g.20gb"
    ann = cluster.api.get_pod("default", "hs")["metadata"]["annotations"]
    assert ann[BIND_PHASE] == "success"
    assert ann[DEVICES_TO_ALLOCATE] == ";;"  # eraseNextDeviceTypeFromAnnotation (plugin/util.go, v2.9.0)
    assert ann[DEVICES_ALLOCATED] == chosen


def test_agent_restart_rebuilds_state_from_nvml_and_annotations(cluster: SimCluster) -> None:
    cluster.submit("keep", {"nvidia.com/gpumem": 30000})
    kept = cluster.admit("keep")
    cluster.stop_agent()
    cluster.start_agent()
    snap = cluster.agent.snapshot() if cluster.agent else None
    assert snap is not None
    held = [i for g in snap.gpus for i in g.instances if i.state == "in_use"]
    assert [i.mig_uuid for i in held] == list(kept.devices)
    assert held[0].holder is not None and held[0].holder.pod == "keep"
    cluster.submit("next", {"nvidia.com/gpumem": 30000})
    assert cluster.admit("next").ok
    assert instances(cluster)[kept.devices[0]] == ("3g.40gb", 0) or kept.devices[0] in instances(cluster)


def test_api_server_down_fails_retryably_and_changes_nothing(cluster: SimCluster) -> None:
    cluster.submit("p", {"nvidia.com/gpumem": 8000})
    before = instances(cluster)
    cluster.api.down()
    a = cluster.admit("p")
    assert not a.ok and "nothing was changed" in a.error and "API server" in a.error
    assert instances(cluster) == before
    assert cluster.api.get_pod("default", "p")["status"]["phase"] == "Failed"  # the kubelet's doing
    cluster.api.up()
    cluster.submit("p2", {"nvidia.com/gpumem": 8000})
    assert cluster.admit("p2").ok


def test_kubelet_restart_reregisters(cluster: SimCluster) -> None:
    cluster.kubelet.restart()
    assert cluster.kubelet.wait_for_registration("nvidia.com/gpu", timeout=5)
    cluster.submit("after", {"nvidia.com/gpumem": 8000})
    assert cluster.wait(lambda: len(cluster.kubelet.devices("nvidia.com/gpu")) == 20, 5)
    assert cluster.admit("after").ok
