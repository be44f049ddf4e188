"""Discovery through the backend: NVML's own profile table, instances, UUIDs, processes, and the planner view."""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml
import pytest

from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.plan import Operation
from hami_mig.mig.state import check_layout
from hami_mig.nvml import ApplyError, MigDisabledError, NvmlBackend
from hami_mig.nvml.profiles import derive_profile_name
from hami_mig.testing.nvmlsim import NvmlSim
from hami_mig.testing.nvmlsim.driver import total_memory_mib
from hami_mig.testing.nvmlsim.symbols import SINCE


def open_backend(sim: Any) -> NvmlBackend:
    b = NvmlBackend(sim)
    b.init()
    return b


@pytest.mark.parametrize("model", [m.name for m in default_catalogue().models])
def test_model_from_nvml_equals_the_catalogue(model: str) -> None:
    dev = open_backend(NvmlSim(f"{model}:1")).device(0)
    cat = default_catalogue().lookup(model)
    assert dev.model is not None and dev.name == cat.name
    assert (dev.model.memory_slices, dev.model.compute_slices) == (cat.memory_slices, cat.compute_slices)
    strip = [(p.name, p.compute_slices, p.memory_slices, p.memory_mib, p.max_count, p.starts, p.nvml_profile_id,
              p.smi_profile_id) for p in cat.profiles]
    assert [(p.name, p.compute_slices, p.memory_slices, p.memory_mib, p.max_count, p.starts, p.nvml_profile_id,
             p.smi_profile_id) for p in dev.model.profiles] == strip


OLDEST_MIG_DRIVER = "450.80.02"  # R450: MIG, but none of the `…V`, `_v2` and `_v3` symbols pynvml binds now


def V1Only(spec: str) -> NvmlSim:
    """A driver whose library has only the v1 symbols: every `…V`/`_v2`/`_v3` call pynvml makes is missing."""
    return NvmlSim(spec, driver_version=OLDEST_MIG_DRIVER)


def test_v1_only_lacks_every_versioned_symbol() -> None:
    sim = V1Only("A100-SXM4-80GB:1")
    sim.nvmlInit()
    assert SINCE and not set(SINCE) & sim.exported_symbols()
    h = sim.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0)
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        sim.nvmlDeviceGetComputeRunningProcesses(h)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        sim._nvmlGetFunctionPointer("nvmlComputeInstanceGetInfo_v2")


@pytest.mark.parametrize("model", [m.name for m in default_catalogue().models if m.memory_mib is not None])
def test_profile_names_are_derived_without_v2(model: str) -> None:
    dev = open_backend(V1Only(f"{model}:1")).device(0)
    assert dev.model is not None
    assert [p.name for p in dev.model.profiles] == [p.name for p in default_catalogue().lookup(model).profiles]


@pytest.mark.parametrize("driver", [OLDEST_MIG_DRIVER, "460.106.00", "470.256.02", "510.108.03"])
def test_older_drivers_read_the_same_node(driver: str) -> None:
    """Profiles, placements, GI/CI ids, MIG UUIDs and processes read through the v1 fallbacks match the new calls."""
    def node(version: str) -> list[dict[str, object]]:
        sim = NvmlSim("A100-SXM4-40GB:1,H100-SXM5-80GB:1", driver_version=version)
        sim.add_instance(0, "3g.20gb", 4, pids=[77])
        sim.add_instance(1, "1g.10gb", 6)
        sim.set_gpu_processes(1, [88])
        backend = open_backend(sim)
        out = [d.to_json() for d in backend.devices()]
        for d in out:
            d["holders"] = [h.pid for h in backend.holders(int(str(d["index"])), proc_root="/nonexistent")]
        return out

    old, new = node(driver), node("580.65.06")
    assert [g["instances"] for g in old] == [g["instances"] for g in new]
    assert [g["holders"] for g in old] == [[77], [88]]
    assert [[(p["name"], p["memory_mib"], p["placements"]) for p in g["profiles"]] for g in old] == \
        [[(p["name"], p["memory_mib"], p["placements"]) for p in g["profiles"]] for g in new]


def test_creating_needs_r460() -> None:
    """nvmlDeviceCreateGpuInstanceWithPlacement has no v1: on R450 apply fails naming the missing function."""
    with pytest.raises(ApplyError, match="NVML_ERROR_FUNCTION_NOT_FOUND"):
        open_backend(V1Only("A100-SXM4-80GB:1")).apply([Operation("create", 0, "1g.10gb", 0)])
    result = open_backend(NvmlSim("A100-SXM4-80GB:1", driver_version="470.256.02")).apply(
        [Operation("create", 0, "1g.10gb", 0)])
    assert [s.outcome for s in result.steps] == ["created"]


def test_derive_name_rounds_like_go() -> None:
    b200 = default_catalogue().lookup("B200")
    assert derive_profile_name(0, 1, 22528, total_memory_mib(b200)) == "1g.23gb"
    assert derive_profile_name(7, 1, 9728, 81920) == "1g.10gb+me"


def test_instances_uuids_processes_and_gpu_state(sim: NvmlSim, backend: NvmlBackend) -> None:
    busy = sim.add_instance(0, "3g.40gb", 4, pids=[100])
    held = sim.add_instance(0, "2g.20gb", 2)
    free = sim.add_instance(0, "1g.10gb", 0)
    dev = backend.device(0)
    rows = {(i.profile, i.start): i for i in dev.instances}
    assert rows[("3g.40gb", 4)].mig_uuid == busy and rows[("3g.40gb", 4)].processes == (100,)
    assert rows[("3g.40gb", 4)].gi_id == 2 and rows[("3g.40gb", 4)].ci_id == 0
    assert rows[("2g.20gb", 2)].memory_mib == 19968
    state = dev.to_gpu_state(in_use_uuids={held})
    in_use = {(i.profile, i.start): i.in_use for i in state.instances}
    assert in_use == {("3g.40gb", 4): True, ("2g.20gb", 2): True, ("1g.10gb", 0): False}
    assert {i.uuid for i in state.instances} == {busy, held, free}
    check_layout(state.model, state.instances)
    assert backend.states()[0].instances == dev.to_gpu_state().instances


def test_processes_we_may_not_see_count_as_in_use(sim: NvmlSim, backend: NvmlBackend) -> None:
    sim.add_instance(0, "1g.10gb", 3)
    sim.deny_process_queries(0)
    dev = backend.device(0)
    assert dev.instances[0].processes is None
    assert dev.to_json()["instances"][0]["processes"] == "unknown"
    assert dev.to_gpu_state().instances[0].in_use


def test_foreign_shapes_are_in_use_and_cis_are_listed(sim: NvmlSim, backend: NvmlBackend) -> None:
    nv = sim
    h = nv.nvmlDeviceGetHandleByIndex(0)
    plc = pynvml.c_nvmlGpuInstancePlacement_t(start=0, size=4)
    split = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 5, ctypes.byref(plc))  # 4g split into two 2c CIs
    nv.nvmlGpuInstanceCreateComputeInstance(split, 1)
    nv.nvmlGpuInstanceCreateComputeInstance(split, 1)
    plc2 = pynvml.c_nvmlGpuInstancePlacement_t(start=6, size=2)
    nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 15, ctypes.byref(plc2))  # a GI left without CI
    dev = backend.device(0)
    split_hw, bare = dev.instances
    assert not split_hw.standard and len(split_hw.compute) == 2
    assert bare.compute == () and bare.mig_uuid is None
    state = {(i.profile, i.start): i for i in dev.to_gpu_state().instances}
    assert state[("4g.40gb", 0)].in_use and not state[("1g.20gb", 6)].in_use
    rows = dev.to_json()["instances"]
    assert [(r["profile"], r["ci_id"]) for r in rows] == [("4g.40gb", 0), ("4g.40gb", 1), ("1g.20gb", None)]


def test_mig_holes_are_skipped(sim: NvmlSim, backend: NvmlBackend) -> None:
    uuid = sim.add_instance(0, "7g.80gb", 0)
    sim.set_mig_index_holes(0, [0, 1])
    assert backend.device(0).instances[0].mig_uuid == uuid


def test_mig_disabled_pending_and_lost_gpus_are_reported_not_fatal() -> None:
    sim = NvmlSim("A100-SXM4-80GB:1:mig-off,A100-SXM4-80GB:1:mig-pending,H100-SXM5-80GB:1")
    sim.lose_gpu(2)
    off, pending, lost = open_backend(sim).devices()
    assert (off.mig_mode, pending.mig_mode, lost.mig_mode) == ("disabled", "pending", "unknown")
    assert "nvidia-smi -i 0 -mig 1" in off.message and "reset" in off.message
    assert "pending" in pending.message
    assert "NVML_ERROR_GPU_IS_LOST" in lost.message
    for d in (off, pending, lost):
        assert not d.mig_enabled and d.to_json()["profiles"] == []
        with pytest.raises(MigDisabledError):
            d.to_gpu_state()


def test_numa_node_is_optional(sim: NvmlSim) -> None:
    class NoNuma:
        def __getattr__(self, name: str) -> Any:
            if name == "nvmlDeviceGetNumaNodeId":
                raise AttributeError(name)
            return getattr(sim, name)

    assert open_backend(sim).device(0).numa_node == 0
    assert open_backend(NoNuma()).device(0).numa_node is None


def test_devices_json_keys(backend: NvmlBackend, sim: NvmlSim) -> None:
    sim.add_instance(1, "1g.10gb", 6, pids=[5])
    doc = backend.device(1).to_json()
    assert set(doc) == {"index", "uuid", "name", "memory_mib", "mig_mode", "numa_node", "profiles", "instances"}
    assert set(doc["profiles"][0]) == {"name", "nvml_profile_id", "memory_mib", "compute_slices", "memory_slices",
                                       "max_count", "placements"}
    assert doc["instances"] == [{"profile": "1g.10gb", "start": 6, "size": 1, "gi_id": 13, "ci_id": 0,
                                 "mig_uuid": doc["instances"][0]["mig_uuid"], "memory_mib": 9728, "processes": [5],
                                 "standard": True}]


def test_discovery_is_read_only(sim: NvmlSim, backend: NvmlBackend) -> None:
    sim.add_instance(0, "1g.10gb", 0)
    sim.reset_counts()
    backend.devices()
    assert sim.mutating_calls() == 0
