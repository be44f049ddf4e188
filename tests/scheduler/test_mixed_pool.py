"""End to end on the fakes, a MIXED node pool: one node run by hami-mig's real agent (NVML simulator, fake kubelet
over gRPC), one by a stand-in for HAMi v2.9's own device plugin (tests/scheduler/hami_plugin.py), both behind
`hami-mig scheduler` over HTTP (webhook -> filter -> prioritize -> bind) and one fake API server.

100 pods of mixed sizes arrive, pods finish at random. After every step: no slot or MIG instance is held by
two live pods, HAMi's plugin never had to reshape a GPU in use, and every pod is either Running on a real
slot or was refused with a reason.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION, decode_records
from hami_mig.kube.annotations import DEVICES_ALLOCATED, VGPU_MODE, decode_pod_devices
from hami_mig.kube.client import KubeClient
from hami_mig.kube.resources import gpu_containers
from hami_mig.scheduler.api import SchedulerApi
from hami_mig.scheduler.bind import Binder
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.lock import NodeLocker
from hami_mig.scheduler.nodeview import build_view
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import ApiSource
from hami_mig.testing.apiserver import pod_manifest
from hami_mig.testing.apiserver.patching import json_patch
from hami_mig.testing.cluster import SimCluster
from tests.scheduler.hami_plugin import AllocateFailed, HamiPluginV29
from tests.scheduler.helpers import post

MIG_NODE = "mig-node"
HAMI_NODE = "hami-node"
A100_80 = "NVIDIA A100-SXM4-80GB"
PODS = 100

# (limits of each GPU container, vgpu-mode or None): small to whole-GPU, percentages, 2-GPU and 2-container pods,
# and requests no MIG instance can serve (refused at admission, with the reason).
MIX: list[tuple[list[dict[str, str]], str | None]] = [
    ([{"nvidia.com/gpumem": "3000"}], None),
    ([{"nvidia.com/gpumem": "8000"}], "mig"),
    ([{"nvidia.com/gpumem": "9000"}], None),
    ([{"nvidia.com/gpumem": "15000"}], None),
    ([{"nvidia.com/gpumem": "20000"}], None),
    ([{"nvidia.com/gpumem": "35000"}], None),
    ([{"nvidia.com/gpumem": "40000"}], "hami-core,mig"),
    ([{"nvidia.com/gpumem": "70000"}], None),
    ([{"nvidia.com/gpumem-percentage": "10"}], None),
    ([{"nvidia.com/gpumem-percentage": "45"}], None),
    ([{"nvidia.com/gpu": "1"}], None),
    ([{"nvidia.com/gpumem": "9000", "nvidia.com/gpu": "2"}], None),
    ([{"nvidia.com/gpumem": "5000"}, {"nvidia.com/gpumem": "9000"}], None),
    ([{"nvidia.com/gpumem": "5000", "nvidia.com/gpumem-percentage": "90", "nvidia.com/gpucores": "150"}], None),
    ([{"nvidia.com/gpumem": "90000"}], None),
]


@dataclass
class Pool:
    cluster: SimCluster
    hami: HamiPluginV29
    server: ExtenderServer
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # pod -> (node or "refused", detail)


@pytest.fixture
def pool() -> Iterator[Pool]:
    with SimCluster(AgentConfig(node_name=MIG_NODE, reconcile_interval_s=3600, events=False),
                    sim_gpus="A100-SXM4-80GB:2") as cluster:
        api = cluster.api
        api.add_node(HAMI_NODE, labels={"gpu": "on"})
        hami = HamiPluginV29(api, HAMI_NODE, [(f"GPU-hami-{i}", A100_80, 81920) for i in range(2)],
                             cluster.config.device_config)
        hami.register()
        config = SchedulerConfig(lock_wait_s=2.0, cache_ttl_s=0.0)
        sapi = SchedulerApi(KubeClient(api.api_client(), component="hami-scheduler"))
        planner = NodePlanner(config)
        source = ApiSource(sapi, 0.0, max_stale_s=0.0)  # every filter sees the pods that finished
        binder = Binder(sapi, planner, NodeLocker(sapi, timeout=config.lock_timeout, wait_s=config.lock_wait_s),
                        on_bound=source.assume, events=False)
        with ExtenderServer(Extender(config, source, binder, planner)) as server:
            yield Pool(cluster, hami, server)


def through_webhook(pool: Pool, name: str, containers: list[dict[str, str]], mode: str | None) -> dict[str, Any] | str:
    """The admission chain: the pod as created, or the webhook's refusal."""
    manifest = pod_manifest(name, containers=[{"name": f"c{i}", "image": "busybox", "resources": {"limits": limits}}
                                              for i, limits in enumerate(containers)],
                            annotations={VGPU_MODE: mode} if mode else None)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": name, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "operation": "CREATE", "namespace": "default", "object": manifest}}
    status, out = post(pool.server.url + "/webhook", review)
    assert status == 200, out
    if not out["response"]["allowed"]:
        return str(out["response"]["status"]["message"])
    patch = json.loads(base64.b64decode(out["response"]["patch"]))
    pod = json_patch(manifest, patch)
    assert pod["spec"]["schedulerName"] == "hami-scheduler"
    return pool.cluster.api.add_pod(pod)


def schedule(pool: Pool, pod: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """kube-scheduler with the extender: filter, prioritize (highest score wins), bind. (node, "") or ("", why)."""
    nodes = [MIG_NODE, HAMI_NODE]
    rng.shuffle(nodes)
    status, out = post(pool.server.url + "/filter", {"pod": pod, "nodenames": nodes})
    assert status == 200 and out["error"] == "", out
    if not out["nodenames"]:
        reasons = out["failedNodes"]
        assert set(reasons) == set(nodes) and all(reasons.values()), out
        return "", "; ".join(f"{n}: {r}" for n, r in sorted(reasons.items()))
    status, scores = post(pool.server.url + "/prioritize", {"pod": pod, "nodenames": out["nodenames"]})
    assert status == 200
    node = max(scores, key=lambda s: s["score"])["host"]
    meta = pod["metadata"]
    status, bound = post(pool.server.url + "/bind", {"podName": meta["name"], "podNamespace": "default",
                                                     "podUID": meta["uid"], "node": node})
    assert status == 200
    if bound["error"]:
        return "", bound["error"]
    return node, ""


def admit(pool: Pool, name: str, node: str) -> str:
    """The kubelet: one Allocate per GPU container, in order. Returns what the containers got."""
    api = pool.cluster.api
    pod = api.get_pod("default", name)
    got: list[str] = []
    for index in gpu_containers(pod):
        limits = (pod["spec"]["containers"][index]["resources"] or {}).get("limits", {})
        count = int(limits.get("nvidia.com/gpu", "1"))
        if node == MIG_NODE:
            admitted = pool.cluster.admit(name, count=count)
            assert admitted.ok, f"{name}: hami-mig's agent refused what the scheduler chose: {admitted.error}"
            got += admitted.devices
        else:
            try:
                got += [f"{gpu}#{pos}" for gpu, pos in pool.hami.allocate("default", name)]
            except AllocateFailed as exc:
                pytest.fail(f"{name}: HAMi's plugin refused what the scheduler chose: {exc}")
            api.set_pod_phase("default", name, "Running")
    return ",".join(got)


def live(pool: Pool, node: str) -> list[dict[str, Any]]:
    return [p for p in pool.cluster.api.pods(node) if p["status"].get("phase") not in ("Succeeded", "Failed")]


def check(pool: Pool) -> None:
    """Nothing held twice, on either node, and nothing promised that cannot be realized."""
    assert not pool.hami.violations, pool.hami.violations
    slots = Counter(d.uuid for p in live(pool, HAMI_NODE)
                    for c in decode_pod_devices(p["metadata"]["annotations"][DEVICES_ALLOCATED]) for d in c)
    assert all(n == 1 for n in slots.values()), f"a HAMi slot named twice: {slots}"
    positions = Counter((g.uuid, pos) for g in pool.hami.gpus.values() for pos in g.held)
    assert all(n == 1 for n in positions.values())
    mig_pods = live(pool, MIG_NODE)
    records = [decode_records(p["metadata"]["annotations"].get(INSTANCES_ANNOTATION)) for p in mig_pods]
    held = Counter(h.mig_uuid for r in records for hs in r.values() for h in hs)
    assert all(n == 1 for n in held.values()), f"a MIG instance held twice: {held}"
    existing = {hw.mig_uuid for d in pool.cluster.backend.devices() for hw in d.instances}
    assert set(held) <= existing, "a pod holds a MIG device NVML does not have"
    planner = NodePlanner(SchedulerConfig())
    for node in (MIG_NODE, HAMI_NODE):
        view = build_view(pool.cluster.api.get_node(node), live(pool, node), planner, planner.config.names)
        assert not view.problem and not [n for n in view.notes if "cannot be" in n or "two" in n], view.notes


def finish_some(pool: Pool, rng: random.Random) -> None:
    running = [(p["spec"]["nodeName"], p["metadata"]["name"]) for n in (MIG_NODE, HAMI_NODE) for p in live(pool, n)]
    for node, name in running:
        if rng.random() < 0.12:
            if node == MIG_NODE:
                pool.cluster.finish(name, delete=rng.random() < 0.3)
            else:
                pool.cluster.api.set_pod_phase("default", name, "Succeeded")


def test_hundred_mixed_pods_on_a_mixed_pool(pool: Pool) -> None:
    rng = random.Random(20240501)
    for i in range(PODS):
        containers, mode = rng.choice(MIX)
        name = f"p{i:03d}"
        pod = through_webhook(pool, name, containers, mode)
        if isinstance(pod, str):
            pool.outcomes[name] = ("refused", pod)
        else:
            node, why = schedule(pool, pod, rng)
            pool.outcomes[name] = (node, admit(pool, name, node)) if node else ("refused", why)
        check(pool)
        finish_some(pool, rng)
        check(pool)

    assert len(pool.outcomes) == PODS
    placed = Counter(node for node, _ in pool.outcomes.values())
    assert placed[MIG_NODE] >= 15 and placed[HAMI_NODE] >= 15, placed  # both kinds of node really served pods
    refused = {n: why for n, (node, why) in pool.outcomes.items() if node == "refused"}
    assert refused and all(why.strip() for why in refused.values())  # refused, and each with its reason
    for name, (node, got) in pool.outcomes.items():
        if node != "refused":
            assert got, f"{name} runs on {node} without a device"
