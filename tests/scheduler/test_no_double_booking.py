"""Property: whatever sequence of pods, binds, allocations and exits, the extender never promises the same
capacity twice.

Two regimes. `locks`: HAMi's protocol as designed: a bind waits for the node's previous allocation, and
the agent (faithfully) sees only realized instances. `stale-locks`: every lock is stale at once (timeout
0) so unallocated reservations pile up on a node, the hardest case, where only the replay of reservations
stands between the extender and double booking; the promises must then be realizable together, in order.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hami_mig.kube.annotations import BIND_PHASE, DEVICES_ALLOCATED, NODE_REGISTER, decode_pod_devices
from hami_mig.mig.state import check_layout
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.nodeview import build_view
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest
from tests.scheduler.helpers import A100_80, AGENT, agent_allocate, extender_on, register

NODES = {"n40": (2, "NVIDIA A100-SXM4-40GB"), "n80": (1, A100_80)}

OPS = st.one_of(
    st.tuples(st.just("pod"), st.sampled_from([3000, 5000, 8000, 12000, 19000, 25000, 40000, 60000]),
              st.integers(1, 2), st.integers(0, 5)),
    st.tuples(st.just("allocate"), st.integers(0, 9)),
    st.tuples(st.just("finish"), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 9)),
)


def check_node(api: FakeApiServer, node: str, config: SchedulerConfig) -> None:
    pods = api.pods(node)
    view = build_view(api.get_node(node), pods, NodePlanner(config), config.names)
    broken = [n for n in view.notes if "cannot be" in n]
    assert not broken, f"{node}: promised capacity that is not there: {broken}"
    for gpu in view.gpus:
        check_layout(gpu.model, gpu.instances, f"{node} GPU {gpu.index}")  # raises on an overlap
    names = Counter(d.uuid for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
                    for c in decode_pod_devices(p["metadata"].get("annotations", {}).get(DEVICES_ALLOCATED, ""))
                    for d in c)
    assert all(n == 1 for n in names.values()), f"{node}: one slot named twice: {names}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=14), st.sampled_from(["hami", "best-fit"]),
       st.sampled_from(["locks", "stale-locks"]))
def test_random_filter_bind_allocate_exit_sequences_never_double_book(ops: list[Any], policy: str,
                                                                      regime: str) -> None:
    stale = regime == "stale-locks"
    config = SchedulerConfig(policy=policy, lock_timeout=timedelta(0) if stale else timedelta(minutes=5),  # type: ignore[arg-type]
                             lock_wait_s=0.02)
    counter = itertools.count()
    with FakeApiServer() as api:
        for name, (gpus, model) in NODES.items():
            api.add_node(name, annotations={NODE_REGISTER: register(name, gpus, model), **AGENT})
        extender = extender_on(api, config)
        for op in ops:
            if op[0] == "pod":
                _, mem, count, pick = op
                pod = api.add_pod(pod_manifest(f"p{next(counter)}", limits={"nvidia.com/gpumem": str(mem),
                                                                          "nvidia.com/gpu": str(count)}))
                passed = extender.filter({"pod": pod, "nodenames": list(NODES)})["nodenames"]
                if not passed:
                    continue
                node = passed[pick % len(passed)]
                meta = pod["metadata"]
                out = extender.bind({"podName": meta["name"], "podNamespace": "default", "podUID": meta["uid"],
                                     "node": node})
                assert out["error"] == "" or "no longer fits" in out["error"] or (
                    not stale and "is locked by" in out["error"]), out
            else:
                live = [p for p in api.pods() if p["status"].get("phase") not in ("Succeeded", "Failed")]
                pending = [p for p in live if p["metadata"].get("annotations", {}).get(BIND_PHASE) == "allocating"]
                pool = pending if op[0] == "allocate" else live
                if not pool:
                    continue
                target = pool[op[1] % len(pool)]["metadata"]["name"]
                if op[0] == "allocate":
                    agent_allocate(api, "default", target, config, faithful=not stale)
                elif op[0] == "finish":
                    api.set_pod_phase("default", target, "Succeeded")
                else:
                    api.delete_pod("default", target, grace_period_s=0)
            for node in NODES:
                check_node(api, node, config)
        # In the end the agent realizes every promise.
        for pod in api.pods():
            running = pod["status"].get("phase") not in ("Succeeded", "Failed")
            if running and pod["metadata"].get("annotations", {}).get(BIND_PHASE) == "allocating":
                agent_allocate(api, "default", pod["metadata"]["name"], config, faithful=not stale)
        for node in NODES:
            check_node(api, node, config)
