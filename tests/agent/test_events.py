"""Every Allocate posts one Event on its pod that says in one line what was chosen and why."""

from __future__ import annotations

import re
import threading
import time

from hami_mig.agent.events import EventPoster
from hami_mig.kube.errors import ApiUnavailable
from tests.agent.conftest import MakeCluster, events, wait_event


def test_created_reused_and_reshaped_events_name_gpu_profile_placement_and_why(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        gpu = c.backend.devices()[0].uuid
        c.submit("big", {"nvidia.com/gpumem": 70000})
        big = c.admit("big")
        e = wait_event(c, "MIGReshaped", about="big")
        assert e["type"] == "Normal" and e["involvedObject"]["kind"] == "Pod"
        assert "\n" not in e["message"]
        assert (f"container 0 asks 1 instance of 70000 MiB: GPU 0 ({gpu}): created 7g.80gb@0 (80896 MiB, geometry 3 "
                f"slot 0) -> {big.devices[0]}") in e["message"]
        assert "why: first configured geometry (knownMigGeometries) that fits" in e["message"]

        c.finish("big")
        c.reconcile()
        c.submit("again", {"nvidia.com/gpumem": 70000})
        again = c.admit("again")
        e = wait_event(c, "MIGAllocated", about="again")
        assert f"reused the free 7g.80gb@0 (80896 MiB, geometry 3 slot 0) -> {again.devices[0]}" in e["message"]
        assert "no MIG change" in e["message"]

        c.finish("again")
        c.reconcile()
        c.submit("small", {"nvidia.com/gpumem": 8000})
        small = c.admit("small")
        e = wait_event(c, "MIGReshaped", about="small")
        assert re.search(rf"created 1g\.10gb@\d \(9728 MiB, geometry 0 slot 0\) after destroying free 7g\.80gb@0 "
                         rf"\({again.devices[0]}\) -> {small.devices[0]}", e["message"]), e["message"]
        assert "2 NVML operation(s)" in e["message"]


def test_best_fit_any_layout_says_so(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1", policy="best-fit", geometries="any") as c:
        c.submit("p", {"nvidia.com/gpumem": 15000})
        assert c.admit("p").ok
        e = wait_event(c, "MIGReshaped", about="p")
        assert "any layout" in e["message"] and "best fit over every layout" in e["message"]


def test_failure_event_says_what_would_have_been_needed(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1", policy="best-fit", geometries="any") as c:
        gpu = c.backend.devices()[0].uuid
        for name, mem in (("half", 40000), ("quarter", 19000)):
            c.submit(name, {"nvidia.com/gpumem": mem})
            assert c.admit(name).ok
        busy = sorted(f"{h.profile}@{h.start}" for h in c.backend.devices()[0].instances)
        c.submit("too-big", {"nvidia.com/gpumem": 30000})
        a = c.admit("too-big")
        assert not a.ok
        e = wait_event(c, "MIGAllocateFailed", about="too-big")
        assert e["type"] == "Warning"
        m = re.search(rf"needs 30000 MiB; largest placeable profile on GPU 0 \({gpu}\) is (\S+) \((\d+) MiB\) because "
                      r"(\S+) and (\S+) are in use", e["message"])
        assert m, e["message"]
        assert int(m.group(2)) < 30000 and sorted([m.group(3), m.group(4)]) == busy
        assert m.group(0) in a.error  # the kubelet's error says the same


def test_config_mode_failure_points_at_the_geometries(make_cluster: MakeCluster) -> None:
    with make_cluster(sim_gpus="A100-SXM4-80GB:1") as c:
        c.sim.add_instance(0, "3g.40gb", 0, pids=[11])
        c.sim.add_instance(0, "2g.20gb", 4, pids=[12])
        c.reconcile()
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        assert not a.ok
        assert "could place 1g.10gb beside the in-use 3g.40gb@0 and 2g.20gb@4, but no configured geometry" in a.error
        assert "--geometries any would allow it" in wait_event(c, "MIGAllocateFailed", about="p")["message"]


class _SlowKube:
    """An API server that holds every Event until `release` is set: Allocate must not wait for it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.posted = threading.Event()

    def create_event(self, *args: object, **kwargs: object) -> None:
        self.release.wait(30)
        self.posted.set()
        raise ApiUnavailable("slow")


class _Pod:
    class metadata:  # mimics V1Pod.metadata
        namespace, name, uid = "default", "p", "u"


def test_posting_never_blocks_and_is_rate_limited() -> None:
    kube = _SlowKube()
    poster = EventPoster(kube, per_second=1.0, burst=3)  # type: ignore[arg-type]
    for _ in range(10):  # the API server answers none of them: a blocking post would hang here
        poster.failed_for(_Pod(), "x")
    assert not kube.posted.is_set()  # every call returned while the first Event was still held
    assert poster.dropped == 7
    kube.release.set()
    assert kube.posted.wait(5)
    poster.close()


def test_no_events_flag_posts_nothing(make_cluster: MakeCluster) -> None:
    with make_cluster(events=False) as c:
        c.submit("p", {"nvidia.com/gpumem": 8000})
        assert c.admit("p").ok
        time.sleep(0.2)
        assert events(c) == []
