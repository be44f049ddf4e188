"""hami-mig's own series: layout, capacity, health, readiness, build info; naming and cardinality rules."""

from __future__ import annotations

import dataclasses
import re

from prometheus_client.registry import CollectorRegistry

from hami_mig import __version__
from hami_mig.agent.snapshot import NodeSnapshot
from hami_mig.metrics import AgentStats, SnapshotCollector, build_registry

from .expo import SnapshotBox, families, lines, text, values
from .snapshots import busy_gpu, full_node, mixed_node, node
from .test_hami_series import LEGACY, V29

GPU = ("device_index", "profile", "state")
POD_LABELS = {"podname", "podnamespace", "pod", "namespace", "containeridx", "container_index"}


def reg(snap: NodeSnapshot | None = None) -> CollectorRegistry:
    fixed = snap or mixed_node()
    return build_registry(lambda: fixed, AgentStats(), process=False)


def test_instances_by_profile_and_state() -> None:
    got = values(reg(), "hami_mig_instances", *GPU)
    nonzero = {k: v for k, v in got.items() if v}
    assert nonzero == {
        ("0", "1g.5gb", "in_use"): 1.0, ("0", "2g.10gb", "in_use"): 1.0, ("0", "2g.10gb", "free"): 1.0,
        ("3", "7g.40gb", "pending"): 1.0,  # MIG mode pending: its instance counts as pending
    }
    # every profile present on a GPU has all three states (zeros included); unmanaged GPU 2 absent
    assert set(got) == {(g, p, s) for g, p in (("0", "1g.5gb"), ("0", "2g.10gb"), ("3", "7g.40gb"))
                        for s in ("in_use", "free", "pending")}


def test_instance_info_modelled_on_hami_v210() -> None:
    out = text(reg())
    assert lines(out, "hami_mig_instance_info") == {
        'hami_mig_instance_info{compute_instance_id="0",device_index="0",device_uuid="GPU-0000",gpu_instance_id="1",'
        'mig_uuid="MIG-0-2g.10gb-0",node="node-a",placement_size="2",placement_start="0",profile="2g.10gb"} 1.0',
        'hami_mig_instance_info{compute_instance_id="0",device_index="0",device_uuid="GPU-0000",gpu_instance_id="3",'
        'mig_uuid="MIG-0-2g.10gb-2",node="node-a",placement_size="2",placement_start="2",profile="2g.10gb"} 1.0',
        'hami_mig_instance_info{compute_instance_id="0",device_index="0",device_uuid="GPU-0000",gpu_instance_id="7",'
        'mig_uuid="MIG-0-1g.5gb-6",node="node-a",placement_size="1",placement_start="6",profile="1g.5gb"} 1.0',
        'hami_mig_instance_info{compute_instance_id="0",device_index="3",device_uuid="GPU-0003",gpu_instance_id="1",'
        'mig_uuid="MIG-3-7g.40gb-0",node="node-a",placement_size="8",placement_start="0",profile="7g.40gb"} 1.0',
    }


def test_free_capacity_and_fragmentation() -> None:
    r = reg()
    cap = values(r, "hami_mig_free_capacity", "device_index", "profile")
    assert cap[("0", "1g.5gb")] == 3.0 and cap[("0", "7g.40gb")] == 0.0
    assert cap[("1", "1g.5gb")] == 7.0 and cap[("1", "7g.40gb")] == 1.0
    assert {g for g, _ in cap} == {"0", "1", "3"}
    assert values(r, "hami_mig_gpu_fragmentation_ratio", "device_index") == {("0",): 0.25, ("1",): 0.0, ("3",): 0.0}


def test_gpu_info_health_and_memory() -> None:
    r = reg()
    assert values(r, "hami_mig_gpu_info", "device_index", "mig_mode", "managed", "name") == {
        ("0", "enabled", "true", "NVIDIA A100-SXM4-40GB"): 1.0,
        ("1", "enabled", "true", "NVIDIA A100-SXM4-40GB"): 1.0,
        ("2", "disabled", "false", "NVIDIA A100-SXM4-40GB"): 1.0,
        ("3", "pending", "true", "NVIDIA A100-SXM4-40GB"): 1.0,
    }
    assert values(r, "hami_mig_gpu_healthy", "device_index") == {("0",): 1, ("1",): 1, ("2",): 0, ("3",): 1}
    assert values(r, "hami_mig_gpu_memory_bytes", "device_index") == {(g,): 40960 * 2**20 for g in "013"}
    assert values(r, "hami_mig_gpu_memory_allocated_bytes", "device_index") == {
        ("0",): (9856 + 4864) * 2**20, ("1",): 0.0, ("3",): 0.0}


def test_node_gauges_and_build_info() -> None:
    out = text(reg())
    assert lines(out, "hami_mig_pods_waiting") == {'hami_mig_pods_waiting{node="node-a"} 2.0'}
    assert lines(out, "hami_mig_kubelet_registered") == {'hami_mig_kubelet_registered{node="node-a"} 1.0'}
    assert lines(out, "hami_mig_nvml_up") == {'hami_mig_nvml_up{node="node-a"} 1.0'}
    assert lines(out, "hami_mig_apiserver_up") == {'hami_mig_apiserver_up{node="node-a"} 0.0'}
    assert lines(out, "hami_mig_build_info") == {f'hami_mig_build_info{{version="{__version__}"}} 1.0'}
    assert lines(out, "hami_mig_snapshot_up") == {"hami_mig_snapshot_up 1.0"}


def test_naming_units_and_cardinality_rules() -> None:
    fams = families(build_registry(full_node, AgentStats()))
    hami_compat = {*LEGACY, *V29}
    for name, fam in fams.items():
        labels = {k for s in fam.samples for k in s.labels}
        assert not labels & {"uid", "pod_uid", "poduid", "pod_uuid"}, name  # no pod-UID label anywhere
        if name in hami_compat:
            assert all(s.labels.get("zone") == "vGPU" for s in fam.samples), name
        else:
            assert name.startswith(("hami_mig_", "process_")), name
            assert re.fullmatch(r"[a-z_]+", name), name
        if labels & POD_LABELS:
            assert name in ("vGPUMemoryAllocated", "vGPUCoreAllocated", "hami_vgpu_memory_allocated_bytes",
                            "hami_vgpu_core_allocated_ratio"), name
        if {"bytes", "seconds", "ratio"} & set(name.split("_")):
            assert name.endswith(("_bytes", "_seconds", "_ratio")), name
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples), name


def test_every_gauge_is_recomputed_nothing_stale() -> None:
    box = SnapshotBox(mixed_node())
    r = build_registry(box, process=False)
    before = text(r)
    assert 'device_index="3"' in before
    box.set(node(busy_gpu(0)))
    after = text(r)
    assert 'device_index="3"' not in after and 'deviceidx="3"' not in after
    assert 'device_index="1"' not in after and 'device_index="2"' not in after
    assert box.calls == 2  # one snapshot per scrape, none at registration


def test_failing_snapshot_keeps_counters_and_build_info() -> None:
    def broken() -> NodeSnapshot:
        raise RuntimeError("lock timeout")

    stats = AgentStats()
    stats.count_reshape("create", "ok")
    out = text(build_registry(broken, stats, process=False))
    assert lines(out, "hami_mig_snapshot_up") == {"hami_mig_snapshot_up 0.0"}
    assert 'hami_mig_reshape_operations_total{op="create",result="ok"} 1.0' in out
    assert "hami_mig_build_info" in out
    assert "nodeGPUMigInstance" not in out and "hami_mig_instances" not in out


def test_registering_twice_is_refused_without_taking_a_snapshot() -> None:
    box = SnapshotBox(mixed_node())
    r = build_registry(box, process=False)
    try:
        r.register(SnapshotCollector(box))
    except ValueError as exc:
        assert "Duplicated timeseries" in str(exc)
    else:
        raise AssertionError("a second SnapshotCollector must be refused")
    assert box.calls == 0


def test_unmanaged_gpu_only_in_info_and_health() -> None:
    out = text(reg())
    mentions = {ln.split("{", 1)[0] for ln in out.splitlines() if 'GPU-0002"' in ln}
    assert mentions == {"hami_mig_gpu_info", "hami_mig_gpu_healthy"}


def test_instance_without_ids_or_uuid_still_reported() -> None:
    gpu = busy_gpu(0)
    bare = dataclasses.replace(gpu.instances[0], mig_uuid=None, gi_id=None, ci_id=None)
    snap = node(dataclasses.replace(gpu, instances=(bare,)))
    (sample,) = [s for s in families(reg(snap))["hami_mig_instance_info"].samples]
    assert (sample.labels["mig_uuid"], sample.labels["gpu_instance_id"], sample.labels["compute_instance_id"]) == (
        "", "", "")
