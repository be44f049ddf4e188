"""Scheduler extender benchmarks: filter latency on 1,000 nodes x 8 GPUs, and binds per second.

Run: python benchmarks/scheduler.py [--nodes 1000] [--gpus 8] [--calls 300] [--binds 300]
Filter: nodes and pods are built in memory (random occupancy made with the planner itself: running
pods with recorded instances, some unallocated reservations), then the filter is called directly and
through HTTP (nodeCacheCapable true: node names; false: full Node objects in the body). Target: p99
< 100 ms for one pod. Binds: through the fake API server (real HTTP, real kubernetes client) with a
simulated node agent that allocates each bound pod and releases the node lock. Prints a table and
asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import urllib3  # noqa: E402
from timing import percentile  # noqa: E402

from hami_mig.agent.records import INSTANCES_ANNOTATION, HeldInstance, encode_records  # noqa: E402
from hami_mig.kube.annotations import (  # noqa: E402
    BIND_PHASE,
    DEVICES_TO_ALLOCATE,
    HAMI_MIG_GPUS,
    NODE_LOCK,
    NODE_REGISTER,
    VGPU_NODE,
    decode_pod_devices,
    encode_pod_devices,
)
from hami_mig.kube.client import KubeClient  # noqa: E402
from hami_mig.kube.nodelock import NodeLock  # noqa: E402
from hami_mig.kube.register import NodeDevice, encode_node_register  # noqa: E402
from hami_mig.mig.planner import apply_decision  # noqa: E402
from hami_mig.mig.request import Request  # noqa: E402
from hami_mig.scheduler.api import SchedulerApi  # noqa: E402
from hami_mig.scheduler.bind import Binder  # noqa: E402
from hami_mig.scheduler.config import SchedulerConfig  # noqa: E402
from hami_mig.scheduler.extender import Extender  # noqa: E402
from hami_mig.scheduler.lock import NodeLocker  # noqa: E402
from hami_mig.scheduler.nodeview import build_view  # noqa: E402
from hami_mig.scheduler.planning import NodePlanner  # noqa: E402
from hami_mig.scheduler.server import ExtenderServer  # noqa: E402
from hami_mig.scheduler.snapshot import ApiSource, StaticSource  # noqa: E402
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest  # noqa: E402

MODEL = "NVIDIA A100-SXM4-80GB"
SIZES = [8000, 8000, 15000, 15000, 30000, 40000, 70000]
Row = tuple[str, ...]


def pod(name: str, limits: dict[str, str], **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "app", "resources": {"limits": limits}}
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}",
                                        "resourceVersion": "1", "creationTimestamp": "2024-05-01T10:00:00Z"},
                           "spec": {"containers": [container]}, "status": {"phase": "Running"}}
    for key, value in extra.items():
        doc["metadata" if key in ("annotations", "labels") else "spec"][key] = value
    return doc


def cluster(n_nodes: int, n_gpus: int, seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes publishing n_gpus MIG GPUs, and pods holding (or reserving) what the planner gave them."""
    rng = random.Random(seed)
    config = SchedulerConfig()
    planner = NodePlanner(config)
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    for n in range(n_nodes):
        name = f"node-{n:04d}"
        register = encode_node_register(
            NodeDevice(id=f"GPU-{name}-{i}", index=i, count=10, devmem=81920, type=MODEL, mode="mig")
            for i in range(n_gpus))
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "resourceVersion": "1",
                             "annotations": {NODE_REGISTER: register, HAMI_MIG_GPUS: "[]"}}}
        nodes.append(node)
        gpus = list(build_view(node, [], planner, config.names).gpus)
        for p in range(rng.randint(0, 3 * n_gpus)):
            decision = planner.decide(gpus, Request(memory_mib=rng.choice(SIZES)))
            if not decision.fits:
                break
            gpus = apply_decision(gpus, decision)
            a = decision.allocations[0]
            held = HeldInstance(a.gpu_uuid, f"MIG-{name}-{p}", a.profile, a.start, a.memory_mib)
            pods.append(pod(f"{name}-p{p}", {"nvidia.com/gpumem": str(a.memory_mib)}, nodeName=name,
                            annotations={INSTANCES_ANNOTATION: encode_records({0: (held,)})}))
        if rng.random() < 0.1:  # a bind whose Allocate has not happened yet
            slot = f"GPU-{name}-{n_gpus - 1}[0-6],NVIDIA,9728,14:;"
            pods.append(pod(f"{name}-pending", {"nvidia.com/gpumem": "8000"}, nodeName=name,
                            annotations={BIND_PHASE: "allocating", DEVICES_TO_ALLOCATE: slot, VGPU_NODE: name}))
    return nodes, pods


def timed(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def stats_row(label: str, ms: Sequence[float], note: str = "") -> Row:
    return (label, f"{statistics.median(ms):.1f}", f"{percentile(ms, 99):.1f}", f"{max(ms):.1f}", note)


def bench_filter(n_nodes: int, n_gpus: int, calls: int) -> list[Row]:
    built = time.perf_counter()
    nodes, pods = cluster(n_nodes, n_gpus)
    print(f"built {len(nodes)} nodes x {n_gpus} GPUs, {len(pods)} pods in {time.perf_counter() - built:.1f}s",
          file=sys.stderr)
    source = StaticSource(nodes, pods)
    extender = Extender(SchedulerConfig(), source)
    gc.set_threshold(50_000, 50, 100)  # what `hami-mig scheduler` sets
    gc.freeze()  # what its cache does after each refresh
    names = [n["metadata"]["name"] for n in nodes]
    requests = {
        "1 x 8000 MiB": pod("q1", {"nvidia.com/gpumem": "8000"}),
        "2 x 20000 MiB": pod("q2", {"nvidia.com/gpumem": "20000", "nvidia.com/gpu": "2"}),
        "1 whole GPU": pod("q3", {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "100"}),
    }
    rows: list[Row] = []
    first = requests["1 x 8000 MiB"]
    cold = timed(lambda: extender.filter({"pod": first, "nodenames": names}), 1)
    result = extender.filter({"pod": first, "nodenames": names})
    rows.append(stats_row("filter, cold (views built)", cold, f"{len(result['nodenames'])} of {n_nodes} fit"))
    for label, p in requests.items():
        doc = {"pod": p, "nodenames": names}
        fits = len(extender.filter(doc)["nodenames"])
        rows.append(stats_row(f"filter direct, {label}", timed(lambda d=doc: extender.filter(d), calls),
                              f"{fits} fit"))

    def refreshed() -> None:
        source.set(nodes, pods)  # what a --cache-ttl refresh looks like: new snapshot, same objects
        extender.filter({"pod": first, "nodenames": names})
        gc.freeze()

    rows.append(stats_row("snapshot rebuild + filter", timed(refreshed, max(calls // 5, 10)),
                          "a cache refresh; background in production"))
    multi = pod("q4", {})
    multi["spec"]["containers"] = [{"name": f"c{i}", "resources": {"limits": {"nvidia.com/gpumem": "8000"}}}
                                   for i in range(3)]
    rows.append(stats_row("filter direct, 3 GPU containers", timed(
        lambda: extender.filter({"pod": multi, "nodenames": names}), max(calls // 10, 5)), "sequential, per-GPU memo"))

    http = urllib3.PoolManager(retries=False, timeout=30.0)
    with ExtenderServer(extender) as server:
        for label, body in (
            ("HTTP /filter, nodenames", json.dumps({"pod": first, "nodenames": names}).encode()),
            ("HTTP /filter, full nodes", json.dumps({"pod": first, "nodes": {"items": nodes}}).encode()),
            ("HTTP /prioritize, nodenames", json.dumps({"pod": first, "nodenames": names}).encode()),
        ):
            path = "/prioritize" if "prioritize" in label else "/filter"

            def call(b: bytes = body, p: str = path) -> None:
                response = http.request("POST", server.url + p, body=b, headers={"Content-Type": "application/json"})
                assert response.status == 200, response.data[:200]

            rows.append(stats_row(label, timed(call, calls), f"{len(body) / 1e6:.1f} MB body"))
    return rows


def simulated_agent(api: FakeApiServer, planner: NodePlanner, stop: threading.Event) -> None:
    """Allocate bound pods like the node agent: realize the slots, record, success, release the lock."""
    config = planner.config
    store = api.store

    def waiting(p: dict[str, Any]) -> bool:
        ann = p["metadata"].get("annotations") or {}
        return bool(p["spec"].get("nodeName")) and ann.get(BIND_PHASE) == "allocating"

    seen = -1
    while not stop.is_set():
        with store.cond:
            if store.generation == seen:
                store.cond.wait(0.05)
            seen = store.generation
        for p in store.select("pods", None, waiting)[0]:
            ann = p["metadata"]["annotations"]
            node = p["spec"]["nodeName"]
            others = [o for o in api.pods(node) if o["metadata"]["uid"] != p["metadata"]["uid"]]
            view = build_view(api.get_node(node), others, planner, config.names)
            states = {g.uuid: g for g in view.gpus}
            devices = decode_pod_devices(ann[DEVICES_TO_ALLOCATE])
            records = {}
            for i, container in enumerate(devices):
                held = []
                for dev in container:
                    uuid = dev.uuid.split("[")[0]
                    decision = planner.replay(states[uuid], dev.uuid, dev.memory_mib)
                    a = decision.allocations[0]
                    held.append(HeldInstance(uuid, f"MIG-{uuid}-{a.start}", a.profile, a.start, a.memory_mib))
                    states[uuid] = apply_decision([states[uuid]], decision)[0]
                records[i] = tuple(held)
            name = p["metadata"]["name"]
            api.patch_pod("default", name, {"metadata": {"annotations": {
                INSTANCES_ANNOTATION: encode_records(records), BIND_PHASE: "success",
                DEVICES_TO_ALLOCATE: encode_pod_devices(tuple(() for _ in devices))}}})
            lock = (api.get_node(node)["metadata"].get("annotations") or {}).get(NODE_LOCK)
            if lock and NodeLock.decode(lock).held_by("default", name):
                api.patch_node(node, {"metadata": {"annotations": {NODE_LOCK: None}}})


def bench_binds(n_binds: int, threads: int, n_nodes: int = 50) -> Row:
    config = SchedulerConfig(lock_wait_s=30.0)
    with FakeApiServer() as api:
        for n in range(n_nodes):
            name = f"node-{n:03d}"
            register = encode_node_register(
                NodeDevice(id=f"GPU-{name}-{i}", index=i, count=10, devmem=81920, type=MODEL, mode="mig")
                for i in range(8))
            api.add_node(name, annotations={NODE_REGISTER: register, HAMI_MIG_GPUS: "[]"})
        pods = [api.add_pod(pod_manifest(f"p{i}", limits={"nvidia.com/gpumem": "8000"})) for i in range(n_binds)]
        planner = NodePlanner(config)
        sapi = SchedulerApi(KubeClient(api.api_client()))
        source = ApiSource(sapi, config.cache_ttl_s)
        binder = Binder(sapi, planner, NodeLocker(sapi, timeout=config.lock_timeout, wait_s=config.lock_wait_s),
                        on_bound=source.assume, events=False)
        extender = Extender(config, source, binder, planner)
        stop = threading.Event()
        agent = threading.Thread(target=simulated_agent, args=(api, NodePlanner(config), stop), daemon=True)
        agent.start()
        errors: list[str] = []
        latencies: list[float] = []
        work = list(enumerate(pods))
        guard = threading.Lock()

        def worker() -> None:
            while True:
                with guard:
                    if not work:
                        return
                    i, p = work.pop(0)
                meta = p["metadata"]
                start = time.perf_counter()
                out = extender.bind({"podName": meta["name"], "podNamespace": "default", "podUID": meta["uid"],
                                     "node": f"node-{i % n_nodes:03d}"})
                with guard:
                    latencies.append((time.perf_counter() - start) * 1000)
                    if out["error"]:
                        errors.append(out["error"])

        started = time.perf_counter()
        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        stop.set()
        agent.join(timeout=5)
        rate = (n_binds - len(errors)) / elapsed
        note = f"{rate:.0f} binds/s, {len(errors)} errors" + (f" ({errors[0][:60]})" if errors else "")
        return stats_row(f"bind, {threads} thread{'s' if threads > 1 else ''}, {n_nodes} nodes", latencies, note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--binds", type=int, default=300)
    args = ap.parse_args(argv)
    rows = bench_filter(args.nodes, args.gpus, args.calls)
    rows.append(bench_binds(args.binds, 1))
    rows.append(bench_binds(args.binds, 8))
    header: Row = ("case", "p50 ms", "p99 ms", "max ms", "note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"\ntarget: filter p99 < 100 ms for one pod on {args.nodes} nodes x {args.gpus} GPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
