"""200 pods arriving at once on an 8-GPU node: every admissible pod admitted, nothing double-booked.

Bounded and loopback-only: the fake API server and fake kubelet live in this process and the run
stops by itself. RSS is printed (a benchmark reports it properly); the assertion is a leak guard.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.mig.layout import for_model
from hami_mig.mig.planner import covers
from hami_mig.mig.request import Request
from hami_mig.testing.cluster import SimCluster

SIZES = [4000, 8000, 9000, 15000, 19000, 30000, 40000, 70000]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    config = AgentConfig(node_name="load", reconcile_interval_s=3600, events=False, policy="best-fit",
                         geometries="any")
    with SimCluster(config, sim_gpus="A100-SXM4-80GB:8") as c:
        yield c


def hardware_can_host(c: SimCluster, mib: int) -> bool:
    """Independent of the planner: is there a free legal placement of a covering profile right now?"""
    for dev in c.backend.devices():
        state = dev.to_gpu_state(held_uuids(c))
        lay = for_model(state.model)
        fixed = lay.occupied(i.key() for i in state.in_use())
        for p in state.model.plannable:
            if covers(p, state.model, Request(memory_mib=mib)) and lay.free_starts(p.name, fixed):
                return True
    return False


def held_uuids(c: SimCluster) -> set[str]:
    out: set[str] = set()
    for pod in c.api.pods("load"):
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ann = pod["metadata"].get("annotations", {})
        if INSTANCES_ANNOTATION in ann:
            for held in json.loads(ann[INSTANCES_ANNOTATION]).values():
                out.update(h["mig"] for h in held)
    return out


def test_200_pods_sequential_admission(cluster: SimCluster) -> None:
    rnd = random.Random(7)
    before = 0.0
    first: tracemalloc.Snapshot | None = None
    running: list[str] = []
    admitted = refused = 0
    for n in range(200):
        mib = rnd.choice(SIZES)
        name = f"p{n}"
        cluster.submit(name, {"nvidia.com/gpumem": mib})
        possible = hardware_can_host(cluster, mib)
        result = cluster.admit(name)
        if n == 100:
            before = rss_mib()  # after warm-up: caches, pools and the bounded history are full
            tracemalloc.start()
            first = tracemalloc.take_snapshot()
        if result.ok:
            admitted += 1
            running.append(name)
        else:
            refused += 1
            assert not possible, f"{name} ({mib} MiB) refused although a legal placement existed: {result.error}"
        if running and rnd.random() < 0.45:
            cluster.finish(running.pop(rnd.randrange(len(running))))
        # no MIG device is held by two live pods
        uuids = [u for p in cluster.api.pods("load") if p.get("status", {}).get("phase") == "Running"
                 for u in _pod_uuids(p)]
        assert len(uuids) == len(set(uuids)), "double-booked MIG instance"
    after = rss_mib()
    gc.collect()
    growth = _production_growth(first, tracemalloc.take_snapshot())
    tracemalloc.stop()
    print(f"\nadmitted {admitted}, refused {refused}; process RSS after 100 pods {before:.1f} MiB, after 200 "
          f"{after:.1f} MiB (includes the fake API server keeping every pod and pytest keeping every log record); "
          f"memory still held by hami-mig's production code: {growth / 1024:.1f} KiB")
    assert admitted > 100
    # Caches (layout answers, NVML profile tables) fill during these rounds; a 40 KB-per-admission leak would not fit.
    assert growth < 4 * 1024 * 1024, f"the agent kept {growth} more bytes over the second 100 admissions"


def _production_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> int:
    """Bytes still allocated from hami_mig's own modules (not its test doubles) since `before`."""
    keep = [tracemalloc.Filter(True, "*/hami_mig/*"), tracemalloc.Filter(False, "*/hami_mig/testing/*")]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "filename")
    return sum(s.size_diff for s in stats)


def _pod_uuids(pod: dict[str, Any]) -> list[str]:
    ann = pod["metadata"].get("annotations", {})
    raw = ann.get(INSTANCES_ANNOTATION)
    return [h["mig"] for held in json.loads(raw).values() for h in held] if raw else []


def test_concurrent_allocates_never_double_book(cluster: SimCluster) -> None:
    """The kubelet admits one pod at a time; even if Allocates overlap, the agent's lock keeps them apart."""
    for n in range(60):
        cluster.submit(f"c{n}", {"nvidia.com/gpumem": 8000})
    ids = cluster.free_device_ids(60)

    def allocate(device_id: str) -> bool:
        try:
            cluster.kubelet.allocate("nvidia.com/gpu", [device_id])
        except grpc.RpcError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(allocate, ids))
    uuids = [u for p in cluster.api.pods("load") for u in _pod_uuids(p)]
    assert sum(outcomes) == 56  # 8 GPUs x 7 1g.10gb instances
    assert len(uuids) == 56 and len(set(uuids)) == 56
