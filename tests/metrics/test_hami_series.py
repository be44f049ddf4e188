"""HAMi-compatible series: exact lines, help text, switches, and freshness after a reshape."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client.utils import floatToGoString

from hami_mig.agent.snapshot import GpuView, Holder, SlotView
from hami_mig.metrics import build_registry
from hami_mig.metrics.hami import MIG_INSTANCE_HELP

from .expo import SnapshotBox, families, lines, text, values
from .snapshots import busy_gpu, idle_gpu, inst, mixed_node, node, pending_gpu, unmanaged_gpu


def go(value: float) -> str:
    return str(floatToGoString(float(value)))


HAMI_WRONG_HELP = "GPU Sharing mode. 0 for hami-core, 1 for mig, 2 for mps"
GIB40 = 40960 * 1024 * 1024


def test_node_gpu_mig_instance_exact_lines() -> None:
    out = text(build_registry(mixed_node, process=False))
    assert lines(out, "nodeGPUMigInstance") == {
        'nodeGPUMigInstance{deviceidx="0",deviceuuid="GPU-0000",migname="1g.5gb-0",nodeid="node-a",zone="vGPU"} 1.0',
        'nodeGPUMigInstance{deviceidx="0",deviceuuid="GPU-0000",migname="2g.10gb-1",nodeid="node-a",zone="vGPU"} 1.0',
        'nodeGPUMigInstance{deviceidx="0",deviceuuid="GPU-0000",migname="2g.10gb-2",nodeid="node-a",zone="vGPU"} 0.0',
        'nodeGPUMigInstance{deviceidx="0",deviceuuid="GPU-0000",migname="2g.10gb-3",nodeid="node-a",zone="vGPU"} 0.0',
        # the idle GPU, the pending one (its one instance free) and the unmanaged one: nothing. Collect
        # (cmd/scheduler/metrics.go, v2.9.0) walks MigUsage.UsageList, which getNodesUsage fills only for a GPU
        # some pod holds a slot of.
    }
    assert "# TYPE nodeGPUMigInstance gauge" in out


def test_v29_name_carries_the_same_values() -> None:
    reg = build_registry(mixed_node, process=False)
    legacy = values(reg, "nodeGPUMigInstance", "nodeid", "deviceuuid", "deviceidx", "migname", "zone")
    v29 = values(reg, "hami_node_gpu_mig_instance_info", "node", "device_uuid", "device_index", "mig_name", "zone")
    assert v29 == legacy
    assert len(v29) == 4
    assert lines(text(reg), "hami_node_gpu_mig_instance_info") >= {
        'hami_node_gpu_mig_instance_info{device_index="0",device_uuid="GPU-0000",mig_name="1g.5gb-0",'
        'node="node-a",zone="vGPU"} 1.0'}


def test_help_text_says_what_the_series_means() -> None:
    fams = families(build_registry(mixed_node, process=False))
    for name in ("nodeGPUMigInstance", "hami_node_gpu_mig_instance_info"):
        assert fams[name].documentation == MIG_INSTANCE_HELP
        assert HAMI_WRONG_HELP not in fams[name].documentation
    assert "1 when" in MIG_INSTANCE_HELP and "<profile>-<slot>" in MIG_INSTANCE_HELP


LEGACY = ("nodeGPUMigInstance", "GPUDeviceMemoryLimit", "GPUDeviceCoreLimit", "GPUDeviceMemoryAllocated",
          "GPUDeviceSharedNum", "GPUDeviceCoreAllocated", "nodeGPUOverview", "nodeGPUMemoryPercentage",
          "vGPUMemoryAllocated", "vGPUCoreAllocated")
V29 = ("hami_node_gpu_mig_instance_info", "hami_gpu_memory_limit_bytes", "hami_gpu_core_limit_ratio",
       "hami_gpu_memory_allocated_bytes", "hami_gpu_shared_count", "hami_gpu_core_allocated_ratio",
       "hami_node_gpu_overview", "hami_node_gpu_memory_allocated_ratio", "hami_vgpu_memory_allocated_bytes",
       "hami_vgpu_core_allocated_ratio")


@pytest.mark.parametrize(("legacy", "v29"), [(True, True), (True, False), (False, True), (False, False)])
def test_switches(legacy: bool, v29: bool) -> None:
    # Collect (cmd/scheduler/metrics.go, v2.9.0): every name it declares except QuotaUsed/hami_resource_quota_used
    fams = families(build_registry(mixed_node, legacy=legacy, v29=v29, process=False))
    assert all((n in fams) == legacy for n in LEGACY)
    assert all((n in fams) == v29 for n in V29)
    assert "hami_mig_instances" in fams  # our own series do not depend on the switches


def test_gpu_series_exact_lines_from_hamis_collect() -> None:
    """Label names, label values and values as Collect (cmd/scheduler/metrics.go, v2.9.0) writes them: memory in
    bytes (Totalmem/Usedmem * 1024 * 1024), devicecores = Usedcores, sharedcontainers = Used."""
    held = Holder("ml", "train", 1, device="GPU-0000[1-1]", device_mib=10240, device_cores=28)
    gpu = dataclasses.replace(busy_gpu(0), instances=(
        inst("2g.10gb", 0, 2, 9856, held), inst("1g.5gb", 6, 1, 4864, Holder("default", "pod-a", 0))))
    out = text(build_registry(lambda: node(gpu), process=False))
    dev = 'deviceidx="0",devicetype="NVIDIA A100-SXM4-40GB",deviceuuid="GPU-0000",nodeid="node-a",zone="vGPU"'
    used = go((10240 + 4864) * 2**20)  # the record's 10240 MiB (HAMi's nominal slot memory) + an unrecorded 1g
    assert lines(out, "GPUDeviceMemoryLimit") == {f"GPUDeviceMemoryLimit{{{dev}}} {go(GIB40)}"}
    assert lines(out, "GPUDeviceCoreLimit") == {f"GPUDeviceCoreLimit{{{dev}}} 100.0"}
    assert lines(out, "GPUDeviceMemoryAllocated") == {
        f'GPUDeviceMemoryAllocated{{devicecores="28",deviceidx="0",devicetype="NVIDIA A100-SXM4-40GB",'
        f'deviceuuid="GPU-0000",nodeid="node-a",zone="vGPU"}} {used}'}
    assert lines(out, "GPUDeviceSharedNum") == {f"GPUDeviceSharedNum{{{dev}}} 2.0"}
    assert lines(out, "GPUDeviceCoreAllocated") == {f"GPUDeviceCoreAllocated{{{dev}}} 28.0"}
    assert lines(out, "nodeGPUOverview") == {
        f'nodeGPUOverview{{devicecores="28",deviceidx="0",devicememorylimit="40960",devicetype="NVIDIA A100-SXM4-40GB",'
        f'deviceuuid="GPU-0000",nodeid="node-a",sharedcontainers="2",zone="vGPU"}} {used}'}
    assert lines(out, "nodeGPUMemoryPercentage") == {
        f'nodeGPUMemoryPercentage{{deviceidx="0",deviceuuid="GPU-0000",nodeid="node-a",zone="vGPU"}} '
        f'{go((10240 + 4864) / 40960)}'}
    # vGPUMemoryAllocated: one series per container device, deviceuuid the record's device string
    assert lines(out, "vGPUMemoryAllocated") == {
        'vGPUMemoryAllocated{containeridx="1",deviceuuid="GPU-0000[1-1]",nodename="node-a",podname="train",'
        f'podnamespace="ml",zone="vGPU"}} {go(10240 * 2**20)}',
        'vGPUMemoryAllocated{containeridx="0",deviceuuid="GPU-0000",nodename="node-a",podname="pod-a",'
        f'podnamespace="default",zone="vGPU"}} {go(4864 * 2**20)}'}
    assert lines(out, "vGPUCoreAllocated") >= {
        'vGPUCoreAllocated{containeridx="1",deviceuuid="GPU-0000[1-1]",nodename="node-a",podname="train",'
        'podnamespace="ml",zone="vGPU"} 28.0'}
    # the v2.9 names carry the same values under Collect's new label names
    assert lines(out, "hami_gpu_memory_allocated_bytes") == {
        f'hami_gpu_memory_allocated_bytes{{device_cores="28",device_index="0",device_type="NVIDIA A100-SXM4-40GB",'
        f'device_uuid="GPU-0000",node="node-a",zone="vGPU"}} {used}'}
    assert lines(out, "hami_vgpu_memory_allocated_bytes") >= {
        'hami_vgpu_memory_allocated_bytes{container_index="1",device_uuid="GPU-0000[1-1]",namespace="ml",'
        f'node="node-a",pod="train",zone="vGPU"}} {go(10240 * 2**20)}'}
    fams = families(build_registry(lambda: node(gpu), process=False))
    assert fams["GPUDeviceCoreLimit"].documentation == "Device memory core limit for a certain GPU"
    assert fams["hami_gpu_core_limit_ratio"].documentation == "Device core limit for a certain GPU"


def test_gpu_memory_and_sharing_series() -> None:
    out = text(build_registry(mixed_node, process=False))
    dev = 'deviceidx="{i}",devicetype="NVIDIA A100-SXM4-40GB",deviceuuid="GPU-000{i}",nodeid="node-a",zone="vGPU"'
    alloc = 'devicecores="0",deviceidx="{i}",devicetype="NVIDIA A100-SXM4-40GB",deviceuuid="GPU-000{i}",' \
            'nodeid="node-a",zone="vGPU"'
    assert lines(out, "GPUDeviceMemoryLimit") == {
        f"GPUDeviceMemoryLimit{{{dev.format(i=i)}}} 4.294967296e+10" for i in (0, 1, 3)}
    assert lines(out, "GPUDeviceMemoryAllocated") == {
        f"GPUDeviceMemoryAllocated{{{alloc.format(i=0)}}} 1.543503872e+10",  # (9856 + 4864) MiB
        f"GPUDeviceMemoryAllocated{{{alloc.format(i=1)}}} 0.0",
        f"GPUDeviceMemoryAllocated{{{alloc.format(i=3)}}} 0.0",
    }
    assert lines(out, "GPUDeviceSharedNum") == {
        f"GPUDeviceSharedNum{{{dev.format(i=0)}}} 2.0",
        f"GPUDeviceSharedNum{{{dev.format(i=1)}}} 0.0",
        f"GPUDeviceSharedNum{{{dev.format(i=3)}}} 0.0",
    }


def test_vgpu_memory_allocated_one_series_per_held_instance() -> None:
    out = text(build_registry(mixed_node, process=False))
    assert lines(out, "vGPUMemoryAllocated") == {
        'vGPUMemoryAllocated{containeridx="1",deviceuuid="GPU-0000",nodename="node-a",podname="train",'
        'podnamespace="ml",zone="vGPU"} 1.0334765056e+10',  # 9856 MiB
        'vGPUMemoryAllocated{containeridx="0",deviceuuid="GPU-0000",nodename="node-a",podname="pod-a",'
        'podnamespace="default",zone="vGPU"} 5.100273664e+09',  # 4864 MiB
    }
    assert "u-1" not in out and "u-2" not in out  # pod UIDs never become labels


def test_two_instances_of_one_container_on_one_gpu_do_not_duplicate_a_series() -> None:
    h = Holder("ns", "p", 0)
    gpu = dataclasses.replace(idle_gpu(0), instances=(inst("1g.5gb", 0, 1, 4864, h), inst("1g.5gb", 1, 1, 4864, h)))
    reg = build_registry(lambda: node(gpu), process=False)
    assert values(reg, "vGPUMemoryAllocated", "podname") == {("p",): float(2 * 4864 * 2**20)}


def test_unmanaged_gpu_is_not_a_hami_device() -> None:
    out = text(build_registry(lambda: node(unmanaged_gpu(2)), process=False))
    for name in (*LEGACY, *V29):
        assert lines(out, name) == set(), name
        assert f"# TYPE {name} gauge" in out  # the family is still described


def test_reshape_shows_at_the_next_scrape_with_nothing_stale() -> None:
    box = SnapshotBox(node(busy_gpu(0), idle_gpu(1)))
    reg = build_registry(box, process=False)
    keys = ("deviceidx", "migname")
    assert values(reg, "nodeGPUMigInstance", *keys) == {
        ("0", "1g.5gb-0"): 1.0, ("0", "2g.10gb-1"): 1.0, ("0", "2g.10gb-2"): 0.0, ("0", "2g.10gb-3"): 0.0}

    # GPU 0: the 2g pod left and the free 2g instances were destroyed; a 3g.20gb now sits beside the
    # 1g (geometry changed). GPU 1 got its first instance (an allocation).
    gpu0 = dataclasses.replace(
        busy_gpu(0), geometry_index=None,
        slots=(SlotView(0, "3g.20gb", True), SlotView(1, "1g.5gb", True)),
        instances=(inst("3g.20gb", 0, 4, 19968, Holder("ml", "big", 0)),
                   inst("1g.5gb", 6, 1, 4864, Holder("default", "pod-a", 0))))
    gpu1 = dataclasses.replace(idle_gpu(1), geometry_index=0, slots=tuple(
        SlotView(s, "1g.5gb", s == 0) for s in range(7)), instances=(inst("1g.5gb", 0, 1, 4864, Holder("a", "b", 0)),))
    box.set(node(gpu0, gpu1))
    assert values(reg, "nodeGPUMigInstance", *keys) == {
        ("0", "3g.20gb-0"): 1.0, ("0", "1g.5gb-1"): 1.0,
        **{("1", f"1g.5gb-{s}"): 1.0 if s == 0 else 0.0 for s in range(7)}}
    box.set(node(idle_gpu(0), idle_gpu(1)))  # every pod gone: HAMi emits no slot at all any more
    assert values(reg, "nodeGPUMigInstance", *keys) == {}
    box.set(node(gpu0, gpu1))
    assert values(reg, "vGPUMemoryAllocated", "podname", "deviceuuid") == {
        ("big", "GPU-0000"): float(19968 * 2**20), ("pod-a", "GPU-0000"): float(4864 * 2**20),
        ("b", "GPU-0001"): float(4864 * 2**20)}
    assert values(reg, "GPUDeviceSharedNum", "deviceidx") == {("0",): 2.0, ("1",): 1.0}


def test_devicetype_gets_hamis_nvidia_prefix() -> None:
    gpu = GpuView(index=0, uuid="GPU-x", name="A100-SXM4-40GB", memory_mib=40960, mig_mode="enabled",
                  healthy=True, managed=True)
    assert values(build_registry(lambda: node(gpu), process=False), "GPUDeviceMemoryLimit", "devicetype") == {
        ("NVIDIA-A100-SXM4-40GB",): float(GIB40)}


def test_gpu_without_an_allocated_slot_has_no_slot_series() -> None:
    reg = build_registry(lambda: node(pending_gpu(3)), process=False)
    assert values(reg, "nodeGPUMigInstance", "migname") == {}
    assert values(reg, "GPUDeviceMemoryLimit", "deviceidx") == {("3",): float(GIB40)}
