"""The filter's verdicts: the node's published GPUs, what pods hold and what binds reserved, the planner's reasons."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hami_mig.kube.annotations import BIND_PHASE, DEVICES_TO_ALLOCATE, VGPU_NODE
from hami_mig.kube.resources import DEFAULT_NAMES
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES, GeometryMode, Policy, apply_decision, decide
from hami_mig.mig.request import Request
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.fit import fit, plan_pod, pod_devices, pod_requests
from hami_mig.scheduler.nodeview import NodeView, build_view
from hami_mig.scheduler.planning import NodePlanner, signature
from hami_mig.scheduler.snapshot import StaticSource
from tests.scheduler.helpers import A100_80, AGENT, gpu_uuid, holding, node_obj, pod_obj, register

CONFIG = SchedulerConfig()


def filter_(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], pod: dict[str, Any],
            config: SchedulerConfig = CONFIG) -> dict[str, Any]:
    extender = Extender(config, StaticSource(nodes, pods))
    return extender.filter({"pod": pod, "nodenames": [n["metadata"]["name"] for n in nodes]})


def test_idle_node_fits_and_full_node_says_why() -> None:
    nodes = [node_obj("idle", 1), node_obj("full", 1)]
    pods = [pod_obj("big", node="full", phase="Running", annotations=holding("full", 0, ("7g.40gb", 0)))]
    out = filter_(nodes, pods, pod_obj("p", {"nvidia.com/gpumem": 8000}))
    assert out["nodenames"] == ["idle"]
    assert "in use: 7g.40gb@0" in out["failedNodes"]["full"]
    assert "full" not in out.get("failedAndUnresolvableNodes", {})  # freeing the GPU would help: preemptible
    assert out["error"] == ""


def test_nodes_without_mig_gpus_are_unresolvable() -> None:
    nodes: list[dict[str, Any]] = [
        {"metadata": {"name": "cpu"}},
        {"metadata": {"name": "core", "annotations": {**AGENT, "hami.io/node-nvidia-register": register("core", 2,
                                                                                              mode="hami-core")}}},
        {"metadata": {"name": "sick", "annotations": {**AGENT, "hami.io/node-nvidia-register": register("sick", 1,
                                                                                              health=False)}}},
        {"metadata": {"name": "odd", "annotations": {**AGENT, "hami.io/node-nvidia-register": register("odd", 1,
                                                                                              "Tesla T4")}}},
        {"metadata": {"name": "junk", "annotations": {**AGENT, "hami.io/node-nvidia-register": "{not json"}}},
    ]
    out = filter_(nodes, [], pod_obj("p", {"nvidia.com/gpumem": 1000}))
    assert out["nodenames"] == []
    reasons = out["failedAndUnresolvableNodes"]
    assert reasons == out["failedNodes"]
    assert "no hami.io/node-nvidia-register annotation" in reasons["cpu"]
    assert "hami-core mode" in reasons["core"]
    assert "unhealthy" in reasons["sick"]
    assert "Tesla T4" in reasons["odd"]
    assert "unreadable" in reasons["junk"]


def test_request_bigger_than_any_gpu_and_too_many_gpus_are_unresolvable() -> None:
    nodes = [node_obj("n", 2)]
    out = filter_(nodes, [], pod_obj("p", {"nvidia.com/gpumem": 50000}))
    assert "the largest profile is 7g.40gb" in out["failedAndUnresolvableNodes"]["n"]
    out = filter_(nodes, [], pod_obj("p", {"nvidia.com/gpumem": 1000, "nvidia.com/gpu": 3}))
    assert out["failedAndUnresolvableNodes"]["n"] == "asks for 3 instances on 3 distinct GPUs; the node has 2 GPUs"


def test_pod_whose_mode_excludes_mig_fails_everywhere() -> None:
    pod = pod_obj("p", {"nvidia.com/gpumem": 1000}, annotations={"nvidia.com/vgpu-mode": "hami-core"})
    out = filter_([node_obj("a"), node_obj("b")], [], pod)
    assert set(out["failedAndUnresolvableNodes"]) == {"a", "b"}
    assert "nvidia.com/vgpu-mode" in out["failedNodes"]["a"]
    ok = pod_obj("p", {"nvidia.com/gpumem": 1000}, annotations={"nvidia.com/vgpu-mode": "hami-core,mig"})
    assert filter_([node_obj("a")], [], ok)["nodenames"] == ["a"]


def test_bad_request_value_names_the_field() -> None:
    out = filter_([node_obj("a")], [], pod_obj("p", {"nvidia.com/gpumem": "lots"}))
    assert "nvidia.com/gpumem (container 'main')" in out["failedNodes"]["a"]


def test_pod_without_gpu_request_fits_everywhere() -> None:
    # Filter (pkg/scheduler/scheduler.go, v2.9.0): resourceReqTotal == 0 returns args.NodeNames, FailedNodes nil
    out = filter_([node_obj("a"), {"metadata": {"name": "cpu"}}], [], pod_obj("p"))
    assert out["nodenames"] == ["a", "cpu"] and out["failedNodes"] == {}


def reserve(name: str, node: str, devices: str, *, phase: str = "allocating", bound: bool = True) -> dict[str, Any]:
    ann = {BIND_PHASE: phase, DEVICES_TO_ALLOCATE: devices, VGPU_NODE: node}
    return pod_obj(name, {"nvidia.com/gpumem": 1000}, node=node if bound else "", annotations=ann)


def test_reserved_but_unallocated_slots_count_as_taken() -> None:
    gpu = gpu_uuid("n", 0)
    nodes = [node_obj("n", 1)]
    whole = pod_obj("p", {"nvidia.com/gpumem": 40000})
    # A pod the extender bound (slot 0 of geometry 3 = 7g.40gb), not yet allocated by the agent.
    taken = reserve("r", "n", f"{gpu}[3-0],NVIDIA,40320,100:;")
    assert filter_(nodes, [taken], whole)["nodenames"] == []
    # Not yet bound (Binding pending) but annotated for the node: still counted.
    assert filter_(nodes, [reserve("r", "n", f"{gpu}[3-0],NVIDIA,40320,100:;", bound=False)], whole)["nodenames"] == []
    # The agent refused it (bind-phase failed): the reservation is void.
    assert filter_(nodes, [reserve("r", "n", f"{gpu}[3-0],NVIDIA,40320,100:;", phase="failed")],
                   whole)["nodenames"] == ["n"]
    # Allocated containers are blanked by the agent: nothing left to reserve.
    assert filter_(nodes, [reserve("r", "n", ";")], whole)["nodenames"] == ["n"]
    # Finished pods hold nothing.
    done = holding("n", 0, ("7g.40gb", 0))
    assert filter_(nodes, [pod_obj("d", node="n", phase="Succeeded", annotations=done)], whole)["nodenames"] == ["n"]


def test_plain_uuid_reservation_and_standalone_pods_count() -> None:
    nodes = [node_obj("n", 1)]
    whole = pod_obj("p", {"nvidia.com/gpumem": 40000})
    plain = reserve("r", "n", f"{gpu_uuid('n', 0)},NVIDIA,20000,42:;")
    assert filter_(nodes, [plain], whole)["nodenames"] == []
    standalone = pod_obj("s", {"nvidia.com/gpumem": 20000}, node="n")  # default scheduler bound it, Pending
    assert filter_(nodes, [standalone], whole)["nodenames"] == []
    # ... but a 3g.20gb still fits beside either.
    half = pod_obj("h", {"nvidia.com/gpumem": 20000})
    assert filter_(nodes, [standalone], half)["nodenames"] == ["n"]
    assert filter_(nodes, [standalone, plain], half)["nodenames"] == []


def test_a_standalone_pod_half_allocated_still_reserves_its_later_containers() -> None:
    """The agent writes `vgpu-devices-allocated` once the first container is realized; the second container,
    not realized yet, must still be reserved (A100-40GB: two 3g.20gb fill the GPU)."""
    from hami_mig.kube.annotations import DEVICES_ALLOCATED

    nodes = [node_obj("n", 1)]
    containers = [{"name": c, "resources": {"limits": {"nvidia.com/gpumem": "20000"}}} for c in ("a", "b")]
    first = holding("n", 0, ("3g.20gb", 4))
    first[DEVICES_ALLOCATED] = f"{gpu_uuid('n', 0)},NVIDIA,20096,0:;;"
    half_done = pod_obj("two", node="n", containers=containers, annotations=first)
    assert filter_(nodes, [half_done], pod_obj("p", {"nvidia.com/gpumem": 20000}))["nodenames"] == []


def test_multi_container_pods_are_planned_container_after_container() -> None:
    containers = [
        {"name": "a", "resources": {"limits": {"nvidia.com/gpumem": "20000"}}},
        {"name": "b", "resources": {"limits": {"nvidia.com/gpumem": "20000"}}},
        {"name": "c", "resources": {"limits": {"nvidia.com/gpumem": "20000"}}},
    ]
    out = filter_([node_obj("one", 1), node_obj("two", 2)], [], pod_obj("p", containers=containers))
    assert out["nodenames"] == ["two"]
    assert out["failedNodes"]["one"].startswith("container 2: no MIG instance")


def test_devices_string_is_hami_slot_form_per_container_init_first() -> None:
    planner = NodePlanner(CONFIG)
    pod = pod_obj("p", containers=[{"name": "sidecar"},
                                   {"name": "m", "resources": {"limits": {"nvidia.com/gpumem": "8000",
                                                                          "nvidia.com/gpu": "2"}}}])
    pod["spec"]["initContainers"] = [{"name": "init"}]
    view = build_view(node_obj("n", 2), [], planner, DEFAULT_NAMES)
    plan = plan_pod(view, pod_requests(pod, DEFAULT_NAMES), planner)
    assert plan.fits
    devices = pod_devices(pod, plan, view, planner)
    assert [len(c) for c in devices] == [0, 0, 2]
    first = devices[2][0]
    assert first.uuid == f"{gpu_uuid('n', 0)}[1-1]"  # 8000 MiB: geometry 1's 2g.10gb slot (HAMi's walk)
    assert first.memory_mib == 9984 and first.cores == 28  # the real 2g.10gb, the config's core %

    any_planner = NodePlanner(SchedulerConfig(geometries="any", policy="best-fit"))
    any_view = build_view(node_obj("n", 2), [], any_planner, DEFAULT_NAMES)
    any_plan = plan_pod(any_view, pod_requests(pod, DEFAULT_NAMES), any_planner)
    assert pod_devices(pod, any_plan, any_view, any_planner)[2][0].uuid == gpu_uuid("n", 0)


# --- the fast path is the planner ---------------------------------------------------------------------

REQUESTS = st.builds(
    Request,
    count=st.integers(1, 3),
    memory_mib=st.one_of(st.none(), st.integers(1, 82000)),
)


@st.composite
def busy_views(draw: st.DrawFn) -> tuple[NodeView, NodePlanner]:
    """A node whose GPUs carry whatever earlier random requests left in use (always a legal layout)."""
    policy: Policy = draw(st.sampled_from(POLICIES))
    mode: GeometryMode = draw(st.sampled_from(GEOMETRY_MODES))
    planner = NodePlanner(SchedulerConfig(policy=policy, geometries=mode))
    n = draw(st.integers(1, 3))
    model = draw(st.sampled_from(["NVIDIA A100-SXM4-40GB", A100_80]))
    view = build_view(node_obj("n", n, model), [], planner, DEFAULT_NAMES)
    gpus = list(view.gpus)
    for _ in range(draw(st.integers(0, 8))):
        d = decide(gpus, Request(memory_mib=draw(st.integers(1000, 45000))), planner.geometries, policy, mode)
        if d.fits:
            gpus = apply_decision(gpus, d)
    return NodeView("n", tuple(gpus), tuple(signature(g) for g in gpus)), planner


@settings(max_examples=300, deadline=None)
@given(busy_views(), st.lists(REQUESTS, min_size=1, max_size=3))
def test_memoised_filter_agrees_with_decide_on_the_whole_node(built: tuple[NodeView, NodePlanner],
                                                               requests: list[Request]) -> None:
    """The filter (per-GPU memo) and the bind (decide on the node, container after container) agree."""
    view, planner = built
    numbered = tuple(enumerate(requests))
    truth = plan_pod(view, numbered, planner)
    verdict = fit(view, numbered, planner)
    assert verdict.fits == truth.fits
    if not truth.fits:
        assert verdict.reason == truth.reason
    again = fit(view, numbered, planner)  # now from the memo
    assert (again.fits, again.reason) == (verdict.fits, verdict.reason)
