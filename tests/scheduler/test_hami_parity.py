"""The extender against HAMi's own scheduler rules: what counts as held, one geometry per GPU on nodes HAMi's
device plugin runs, the slot and GPU HAMi would pick. Expected values come from HAMi's Go source and tests
(file, function and tag at each)."""

from __future__ import annotations

from typing import Any

import pytest

from hami_mig.kube.annotations import BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE
from hami_mig.kube.resources import DEFAULT_NAMES
from hami_mig.mig.geometry import parse_device_config
from hami_mig.mig.request import Request
from hami_mig.scheduler import hami_node
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.fit import NoFitError, bind_devices, pod_requests
from hami_mig.scheduler.nodeview import build_view
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.snapshot import StaticSource
from tests.scheduler.helpers import A100_80, gpu_uuid, node_obj, pod_obj, register

CONFIG = SchedulerConfig()


def hami_node_obj(name: str, gpus: int = 2, model: str = A100_80) -> dict[str, Any]:
    """A node HAMi's device plugin runs: the register annotation only (no hami-mig.io/gpus)."""
    return {"metadata": {"name": name, "annotations": {"hami.io/node-nvidia-register": register(name, gpus, model)}}}


def held_by_hami(name: str, node: str, devices: str, *, phase: str = "Running") -> dict[str, Any]:
    """A pod as HAMi leaves it once its device plugin allocated it: HAMi's annotations only, no hami-mig record."""
    ann = {VGPU_NODE: node, DEVICES_ALLOCATED: devices, DEVICES_TO_ALLOCATE: ";;", BIND_PHASE: "success"}
    return pod_obj(name, {"nvidia.com/gpumem": "1000"}, node=node, phase=phase, annotations=ann)


def filter_(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], pod: dict[str, Any],
            config: SchedulerConfig = CONFIG) -> dict[str, Any]:
    extender = Extender(config, StaticSource(nodes, pods))
    return extender.filter({"pod": pod, "nodenames": [n["metadata"]["name"] for n in nodes]})


def devices_for(node: dict[str, Any], pods: list[dict[str, Any]], pod: dict[str, Any],
                config: SchedulerConfig = CONFIG) -> str:
    planner = NodePlanner(config)
    view = build_view(node, pods, planner, config.names)
    from hami_mig.kube.annotations import encode_pod_devices
    return encode_pod_devices(bind_devices(pod, view, pod_requests(pod, DEFAULT_NAMES), planner))


@pytest.mark.parametrize("node", [node_obj("n", 2, A100_80), hami_node_obj("n")], ids=["hami-mig", "hami-agent"])
def test_slots_held_through_hamis_annotations_only_are_taken(node: dict[str, Any]) -> None:
    # getNodesUsage / onAddPod (pkg/scheduler/scheduler.go, v2.9.0): every live pod with hami.io/vgpu-node counts
    # the devices of hami.io/vgpu-devices-allocated (DecodePodDevices(SupportDevices, ...)).
    holders = [held_by_hami(f"h{i}", "n", f"{gpu_uuid('n', i)}[3-0],NVIDIA,80896,98:;") for i in range(2)]
    out = filter_([node], holders, pod_obj("p", {"nvidia.com/gpumem": 20000}))
    assert out["nodenames"] == [], out
    # Once one finishes, its GPU is free again.
    holders[0]["status"]["phase"] = "Succeeded"
    assert filter_([node], holders, pod_obj("p", {"nvidia.com/gpumem": 20000}))["nodenames"] == ["n"]


def test_a_slot_realized_by_hamis_plugin_is_never_handed_out_again() -> None:
    node = hami_node_obj("n", 1)
    holder = held_by_hami("h", "n", f"{gpu_uuid('n', 0)}[2-0],NVIDIA,40192,42:;")
    # AddResourceUsage (v2.9.0), busy GPU: the first free slot of the held geometry with enough memory.
    assert devices_for(node, [holder], pod_obj("p", {"nvidia.com/gpumem": 20000})) == \
        f"{gpu_uuid('n', 0)}[2-1],NVIDIA,40192,42:;"
    second = held_by_hami("h2", "n", f"{gpu_uuid('n', 0)}[2-1],NVIDIA,40192,42:;")
    with pytest.raises(NoFitError, match="HAMi's device plugin changes a GPU's geometry only when it is idle"):
        devices_for(node, [holder, second], pod_obj("p", {"nvidia.com/gpumem": 1000}))


def test_one_geometry_per_gpu_on_a_node_hamis_plugin_runs() -> None:
    # A 5000 MiB pod beside a held [2-0] (3g.40gb): HAMi's plugin cannot reshape the GPU in use, so the pod gets
    # the other 3g.40gb of geometry 2, never a 1g of geometry 0 or 1.
    node = hami_node_obj("n", 1)
    holder = held_by_hami("h", "n", f"{gpu_uuid('n', 0)}[2-0],NVIDIA,40192,42:;")
    assert devices_for(node, [holder], pod_obj("p", {"nvidia.com/gpumem": 5000})) == \
        f"{gpu_uuid('n', 0)}[2-1],NVIDIA,40192,42:;"
    # On a hami-mig node the same holder leaves room for a 1g beside it (hami-mig reshapes around it).
    mig = node_obj("n", 1, A100_80)
    assert devices_for(mig, [holder], pod_obj("p", {"nvidia.com/gpumem": 5000})).startswith(f"{gpu_uuid('n', 0)}[")


# AddResourceUsage (pkg/device/nvidia/device.go, v2.9.0) with TestDevices_AddResourceUsage's templates
# (pkg/device/nvidia/device_test.go, v2.9.0): (geometries, Usedmem, the wanted UUID suffix, Usedmem, Usedcores).
TEMPLATES = [
    ([[("1g.5gb", 25, 5120, 1)], [("1g.5gb", 25, 5120, 1), ("2g.10gb", 50, 10240, 1)]], 6000, "[1-1]", 10240, 50),
    ([[("1g.3gb", 25, 3072, 1)], [("1g.5gb", 25, 5120, 1), ("2g.10gb", 50, 10240, 1)]], 8000, "[1-1]", 10240, 50),
    ([[("1g.5gb", 25, 5120, 1), ("2g.10gb", 50, 10240, 1)], [("3g.20gb", 100, 20480, 1)]], 6000, "[0-1]", 10240, 50),
    # "template with Count > 1": HAMi writes "dev-3[0-1]" (the ENTRY index) while it marks UsageList[2] in use,
    # so its plugin hands out position 1, a 1g.5gb. hami-mig writes the slot it marks: [0-2] (documented).
    ([[("1g.5gb", 50, 5120, 2), ("2g.10gb", 100, 10240, 1)]], 8000, "[0-2]", 10240, 100),
]


@pytest.mark.parametrize(("geometries", "usedmem", "suffix", "mem", "cores"), TEMPLATES)
def test_idle_gpu_slot_choice_is_hamis(geometries: list[list[tuple[str, int, int, int]]], usedmem: int, suffix: str,
                                       mem: int, cores: int) -> None:
    yaml = "nvidia:\n  knownMigGeometries:\n  - models: [\"TEST\"]\n    allowedGeometries:\n" + "".join(
        "    - [" + ", ".join(f"{{name: {n}, core: {c}, memory: {m}, count: {k}}}" for n, c, m, k in geo) + "]\n"
        for geo in geometries)
    config = parse_device_config(yaml)
    gpu = hami_node.HamiGpu(0, "dev", "NVIDIA-TEST", 40960, 100, 10, 0, True, "mig",
                            hami_node.hami_geometries("NVIDIA-TEST", config))
    got = hami_node.pick(gpu, Request(memory_mib=usedmem))
    assert isinstance(got, hami_node.Pick)
    assert got.device().uuid == "dev" + suffix
    after = hami_node.take(got)
    assert (after.usedmem, after.usedcores, after.used) == (mem, cores, 1)


def test_spread_takes_the_least_used_gpu_last_in_register_order_on_ties() -> None:
    # Fit walks the sorted DeviceUsageList from its end (`for i := len(devices) - 1; i >= 0; i--`); spread
    # (the default --gpu-scheduler-policy) sorts by ComputeScore descending (gpu_policy.go Less), so on an idle
    # node the LAST GPU is taken first, and then the less used one.
    node = hami_node_obj("n", 2)
    first = devices_for(node, [], pod_obj("p", {"nvidia.com/gpumem": 5000}))
    assert first == f"{gpu_uuid('n', 1)}[0-0],NVIDIA,9728,14:;"
    holder = held_by_hami("h", "n", first)
    assert devices_for(node, [holder], pod_obj("q", {"nvidia.com/gpumem": 5000})) == \
        f"{gpu_uuid('n', 0)}[0-0],NVIDIA,9728,14:;"
    # binpack (hami.io/gpu-scheduler-policy) takes the most used one
    packed = pod_obj("b", {"nvidia.com/gpumem": 5000}, annotations={hami_node.GPU_POLICY_ANNOTATION: "binpack"})
    assert devices_for(node, [holder], packed) == f"{gpu_uuid('n', 1)}[0-1],NVIDIA,9728,14:;"


def test_hamis_fit_checks_on_a_hami_agent_node() -> None:
    node = hami_node_obj("n", 1)
    holder = held_by_hami("h", "n", f"{gpu_uuid('n', 0)}[0-0],NVIDIA,9728,14:;")
    # Fit (v2.9.0) in its order: `dev.Totalcore-dev.Usedcores < k.Coresreq` first (14% of the 1g is used) ...
    alone = pod_obj("p", {"nvidia.com/gpumem": 1000, "nvidia.com/gpucores": 100})
    assert "86% cores unallocated, 100% asked" in filter_([node], [holder], alone)["failedNodes"]["n"]
    # ... then Coresreq=100 asks for the GPU alone (`dev.Totalcore == 100 && k.Coresreq == 100 && dev.Used > 0`)
    coreless = held_by_hami("h", "n", f"{gpu_uuid('n', 0)}[0-0],NVIDIA,9728,0:;")
    assert "alone" in filter_([node], [coreless], alone)["failedNodes"]["n"]
    assert filter_([node], [], alone)["nodenames"] == ["n"]
    # A HAMi type substring match: the A100-80GB row names "A100-SXM4-80GB", a substring of the register type
    assert hami_node.hami_geometries("NVIDIA A100-SXM4-80GB", CONFIG.device_config)[3].entries[0].name == "7g.80gb"


def test_whole_gpu_request_gets_the_largest_slot_not_a_bare_uuid() -> None:
    # HAMi v2.9 asks Totalmem (mempnum 100) which no A100-80GB template reaches and writes the bare GPU UUID;
    # hami-mig asks the largest configured entry (documented).
    node = hami_node_obj("n", 1)
    assert devices_for(node, [], pod_obj("p", {"nvidia.com/gpu": 1})) == f"{gpu_uuid('n', 0)}[3-0],NVIDIA,80896,98:;"


@pytest.mark.parametrize(("annotations", "type_name", "allowed"), [
    # Test_CheckType (pkg/device/nvidia/device_test.go, v2.9.0)
    ({"nvidia.com/use-gputype": "A10"}, "NVIDIA A100", True),
    ({"nvidia.com/use-gputype": "A10", "nvidia.com/nouse-gputype": "A100"}, "NVIDIA A100", False),
    ({"nvidia.com/use-gputype": "A10", "nvidia.com/nouse-gputype": "A100"}, "NVIDIA A10", True),
    # TestCheckGPUtype_NoUse, TestCheckGPUtype_InUseMismatch (same file)
    ({"nvidia.com/nouse-gputype": "A100"}, "NVIDIA-A100", False),
    ({"nvidia.com/nouse-gputype": "A100"}, "NVIDIA-V100", True),
    ({"nvidia.com/use-gputype": "A100"}, "NVIDIA-V100", False),
])
def test_gpu_type_filters_as_hamis_check_gpu_type(annotations: dict[str, str], type_name: str, allowed: bool) -> None:
    from hami_mig.scheduler.gpu_filters import gpu_allowed

    assert gpu_allowed(annotations, "dev-0", type_name) is allowed


def test_gpu_filters_reach_both_kinds_of_node() -> None:
    # CheckUUID (pkg/device/devices.go, v2.9.0): use-gpuuuid lists the only GPUs allowed; nouse-gpuuuid excludes
    for node in (node_obj("n", 2, A100_80), hami_node_obj("n")):
        only_1 = pod_obj("p", {"nvidia.com/gpumem": 5000}, annotations={"nvidia.com/use-gpuuuid": gpu_uuid("n", 1)})
        assert devices_for(node, [], only_1).startswith(f"{gpu_uuid('n', 1)}[")
        not_0 = pod_obj("p", {"nvidia.com/gpumem": 5000}, annotations={"nvidia.com/nouse-gpuuuid": gpu_uuid("n", 0)})
        assert devices_for(node, [], not_0).startswith(f"{gpu_uuid('n', 1)}[")
        other = pod_obj("p", {"nvidia.com/gpumem": 5000}, annotations={"nvidia.com/use-gputype": "H100"})
        out = filter_([node], [], other)
        assert out["nodenames"] == [] and "nvidia.com/use-gputype='H100'" in out["failedAndUnresolvableNodes"]["n"]
        both = pod_obj("p", {"nvidia.com/gpumem": 5000, "nvidia.com/gpu": 2},
                       annotations={"nvidia.com/use-gpuuuid": gpu_uuid("n", 1)})
        assert "2 distinct GPUs; the node has 1" in filter_([node], [], both)["failedNodes"]["n"]
