"""The simulator behaves like the driver the doc describes: codes, ids, placement policy, struct types."""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml
import pytest

from hami_mig.testing.nvmlsim import NvmlSim

C = ctypes.c_uint


def started(spec: str, **kw: Any) -> NvmlSim:
    sim = NvmlSim(spec, **kw)
    sim.nvmlInit()
    return sim


def code(exc: pytest.ExceptionInfo[pynvml.NVMLError]) -> int:
    return int(exc.value.value)


def gi_at(sim: NvmlSim, h: Any, profile_id: int, start: int, size: int) -> Any:
    plc = pynvml.c_nvmlGpuInstancePlacement_t(start=start, size=size)
    return sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, profile_id, ctypes.byref(plc))


def full_ci(sim: NvmlSim, gi: Any, slices: int) -> Any:
    enum = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4}[slices]
    return sim.nvmlGpuInstanceCreateComputeInstance(gi, enum)


def test_calls_before_init_are_uninitialized() -> None:
    sim = NvmlSim("A30:1")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlShutdown()
    sim.nvmlInit()
    assert sim.nvmlDeviceGetCount() == 1
    sim.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetHandleByIndex(0)


def test_handles_and_structs_are_pynvmls_own() -> None:
    sim = started("A100-SXM4-40GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    assert sim.nvmlDeviceGetName(h) == "NVIDIA A100-SXM4-40GB"
    assert isinstance(sim.nvmlDeviceGetUUID(h), str)
    mem = sim.nvmlDeviceGetMemoryInfo(h)
    assert isinstance(mem, pynvml.c_nvmlMemory_t) and mem.total == 40960 * 2**20
    assert isinstance(sim.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2), pynvml.c_nvmlMemory_v2_t)
    info = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
    assert isinstance(info, pynvml.c_nvmlGpuInstanceProfileInfo_v2_t)
    assert (info.id, info.sliceCount, info.instanceCount, info.memorySizeMB, info.name) == (19, 1, 7, 4864,
                                                                                            "MIG 1g.5gb")
    v1 = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0, 1)
    assert isinstance(v1, pynvml.c_nvmlGpuInstanceProfileInfo_t) and not hasattr(v1, "name")
    mig_flag = sim.nvmlDeviceIsMigDeviceHandle(h)
    assert isinstance(mig_flag, C) and mig_flag.value == 0
    gi = gi_at(sim, h, 9, 4, 4)
    assert isinstance(gi, pynvml.c_nvmlGpuInstance_t)
    ci = full_ci(sim, gi, 3)
    assert isinstance(ci, pynvml.c_nvmlComputeInstance_t)
    gi_info = sim.nvmlGpuInstanceGetInfo(gi)
    assert isinstance(gi_info, pynvml.c_nvmlGpuInstanceInfo_t)
    assert (gi_info.profileId, gi_info.placement.start, gi_info.placement.size) == (9, 4, 4)
    ci_info = sim.nvmlComputeInstanceGetInfo(ci)
    assert isinstance(ci_info, pynvml.c_nvmlComputeInstanceInfo_t) and ci_info.id == 0
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert sim.nvmlDeviceIsMigDeviceHandle(mig).value == 1
    assert sim.nvmlDeviceGetUUID(mig).startswith("MIG-")
    assert sim.nvmlDeviceGetName(mig) == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert sim.nvmlDeviceGetMemoryInfo(mig).total == 20096 * 2**20
    assert sim.NVML_GPU_INSTANCE_PROFILE_COUNT == pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
    assert sim.c_nvmlGpuInstancePlacement_t is pynvml.c_nvmlGpuInstancePlacement_t
    with pytest.raises(AttributeError):
        sim.nvmlDeviceGetPowerUsage  # noqa: B018 - not simulated: never falls through to the real library


def test_profile_enums_ids_and_errors() -> None:
    sim = started("A100-SXM4-80GB:1,A30:1")
    a100, a30 = sim.nvmlDeviceGetHandleByIndex(0), sim.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        sim.nvmlDeviceGetGpuInstanceProfileInfo(a100, pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetGpuInstanceProfileInfo(a100, pynvml.NVML_GPU_INSTANCE_PROFILE_8_SLICE)
    assert sim.nvmlDeviceGetGpuInstanceProfileInfo(a30, pynvml.NVML_GPU_INSTANCE_PROFILE_4_SLICE).id == 0
    assert sim.nvmlDeviceGetGpuInstanceProfileInfo(a100, pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2).id == 15
    with pytest.raises(pynvml.NVMLError_NotSupported):  # an id only A30 has
        sim.nvmlDeviceGetGpuInstanceRemainingCapacity(a100, 21)
    count = C()
    sim.nvmlDeviceGetGpuInstancePossiblePlacements(a100, 14, None, ctypes.byref(count))
    assert count.value == 3
    small = (pynvml.c_nvmlGpuInstancePlacement_t * 2)()
    with pytest.raises(pynvml.NVMLError_InsufficientSize):
        sim.nvmlDeviceGetGpuInstancePossiblePlacements(a100, 14, small, ctypes.byref(count))
    arr = (pynvml.c_nvmlGpuInstancePlacement_t * 3)()
    assert sim.nvmlDeviceGetGpuInstancePossiblePlacements(a100, 14, arr, ctypes.byref(count)) == 0
    assert [(p.start, p.size) for p in arr] == [(0, 2), (2, 2), (4, 2)]


def test_placement_rules() -> None:
    sim = started("A100-SXM4-80GB:1,A30:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        gi_at(sim, h, 14, 6, 2)  # 2g never at 6
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        gi_at(sim, h, 5, 4, 4)  # 4g only at 0
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        gi_at(sim, h, 14, 2, 1)  # wrong size
    gi_at(sim, h, 5, 0, 4)  # 4g@0
    gi_at(sim, h, 9, 4, 4)  # + 3g@4: legal since R510
    with pytest.raises(pynvml.NVMLError_InsufficientResources) as exc:
        gi_at(sim, h, 19, 3, 1)  # overlap: never ALREADY_EXISTS
    assert code(exc) == pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES
    a30 = sim.nvmlDeviceGetHandleByIndex(1)
    gi_at(sim, a30, 21, 0, 1)  # 1g.6gb+me
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        gi_at(sim, a30, 6, 2, 2)  # 2g.12gb+me: the single media set is taken
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        gi_at(sim, a30, 21, 1, 1)  # max count 1


def test_auto_placement_policy() -> None:
    sim = started("H100-SXM5-80GB:1,A30:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    starts = [sim.nvmlGpuInstanceGetInfo(sim.nvmlDeviceCreateGpuInstance(h, 19)).placement.start for _ in range(7)]
    assert starts == [6, 4, 5, 0, 1, 2, 3]
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        sim.nvmlDeviceCreateGpuInstance(h, 19)
    sim.reset_gpu(0)
    assert sim.nvmlGpuInstanceGetInfo(sim.nvmlDeviceCreateGpuInstance(h, 14)).placement.start == 4
    a30 = sim.nvmlDeviceGetHandleByIndex(1)
    assert sim.nvmlGpuInstanceGetInfo(sim.nvmlDeviceCreateGpuInstance(a30, 14)).placement.start == 0


def test_remaining_capacity_matches_the_doc_sequence() -> None:
    sim = started("A100-SXM4-40GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    ids = {"1g": 19, "me": 20, "1g.10gb": 15, "2g": 14, "3g": 9, "4g": 5, "7g": 0}

    def free() -> dict[str, int]:
        return {k: sim.nvmlDeviceGetGpuInstanceRemainingCapacity(h, v) for k, v in ids.items()}

    assert free() == {"1g": 7, "me": 1, "1g.10gb": 4, "2g": 3, "3g": 2, "4g": 1, "7g": 1}
    gi_at(sim, h, 5, 0, 4)
    assert free() == {"1g": 3, "me": 1, "1g.10gb": 2, "2g": 1, "3g": 1, "4g": 0, "7g": 0}
    gi_at(sim, h, 14, 4, 2)
    assert {k: free()[k] for k in ("1g", "1g.10gb", "2g")} == {"1g": 1, "1g.10gb": 1, "2g": 0}
    gi_at(sim, h, 19, 6, 1)
    assert set(free().values()) == {0}


def test_gi_ids_are_driver_chosen_and_reused() -> None:
    sim = started("A100-SXM4-80GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    one = gi_at(sim, h, 19, 5, 1)
    two = gi_at(sim, h, 14, 2, 2)
    assert sim.nvmlGpuInstanceGetInfo(one).id == 12  # 7 + s
    assert sim.nvmlGpuInstanceGetInfo(two).id == 4  # 3 + s/2
    sim.nvmlGpuInstanceDestroy(one)
    with pytest.raises(pynvml.NVMLError_NotFound):
        sim.nvmlGpuInstanceGetInfo(one)  # stale handle after destroy
    with pytest.raises(pynvml.NVMLError_NotFound):
        sim.nvmlDeviceGetGpuInstanceById(h, 12)
    assert sim.nvmlGpuInstanceGetInfo(gi_at(sim, h, 19, 5, 1)).id == 12  # reused
    other = started("A100-SXM4-80GB:1", gi_ids="lowest")
    h2 = other.nvmlDeviceGetHandleByIndex(0)
    assert other.nvmlGpuInstanceGetInfo(gi_at(other, h2, 19, 5, 1)).id == 1


def test_destroy_rules_and_ci_ids() -> None:
    sim = started("A100-SXM4-80GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = gi_at(sim, h, 0, 0, 8)  # 7g
    cis = [sim.nvmlGpuInstanceCreateComputeInstance(gi, 0) for _ in range(3)]  # three 1c CIs
    assert [sim.nvmlComputeInstanceGetInfo(c).id for c in cis] == [0, 1, 2]
    assert sim.nvmlGpuInstanceGetComputeInstanceRemainingCapacity(gi, 0) == 4
    with pytest.raises(pynvml.NVMLError_InUse):
        sim.nvmlGpuInstanceDestroy(gi)
    uuid = sim.nvmlDeviceGetUUID(sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 1))
    sim.make_busy(uuid, [77])
    with pytest.raises(pynvml.NVMLError_InUse):
        sim.nvmlComputeInstanceDestroy(cis[1])
    sim.make_idle(uuid)
    for c in cis:
        sim.nvmlComputeInstanceDestroy(c)
    with pytest.raises(pynvml.NVMLError_NotFound):
        sim.nvmlComputeInstanceGetInfo(cis[0])
    sim.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(pynvml.NVMLError_NotFound):
        sim.nvmlGpuInstanceDestroy(gi)


def test_mig_device_index_order_and_holes() -> None:
    sim = started("A100-SXM4-80GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    full_ci(sim, gi_at(sim, h, 19, 6, 1), 1)  # GI 13
    full_ci(sim, gi_at(sim, h, 14, 0, 2), 2)  # GI 3
    assert sim.nvmlDeviceGetMaxMigDeviceCount(h) == 7

    def order() -> list[int]:
        out = []
        for i in range(sim.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                out.append(sim.nvmlDeviceGetGpuInstanceId(sim.nvmlDeviceGetMigDeviceHandleByIndex(h, i)))
            except pynvml.NVMLError_NotFound:
                out.append(-1)
        return out

    assert order() == [3, 13, -1, -1, -1, -1, -1]
    full_ci(sim, gi_at(sim, h, 19, 2, 1), 1)  # GI 9 shifts GI 13 down
    assert order()[:3] == [3, 9, 13]
    sim.set_mig_index_holes(0, [0])
    assert order()[:4] == [-1, 3, 9, 13]
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        sim.nvmlDeviceGetMigDeviceHandleByIndex(h, 7)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetGpuInstanceId(h)  # not a MIG handle


def test_processes_and_permissions() -> None:
    sim = started("A100-SXM4-80GB:1")
    uuid = sim.add_instance(0, "2g.20gb", 2, pids=[10, 11])
    h = sim.nvmlDeviceGetHandleByIndex(0)
    mig = sim.nvmlDeviceGetHandleByUUID(uuid)
    procs = sim.nvmlDeviceGetComputeRunningProcesses(mig)
    assert [(p.pid, p.gpuInstanceId, p.computeInstanceId) for p in procs] == [(10, 4, 0), (11, 4, 0)]
    assert procs[0].usedGpuMemory == 512 * 2**20
    assert len(sim.nvmlDeviceGetComputeRunningProcesses(h)) == 2
    sim.deny_process_queries(0)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        sim.nvmlDeviceGetComputeRunningProcesses(mig)


def test_mig_mode_off_and_pending() -> None:
    sim = started("A100-SXM4-80GB:1:mig-off,H100-SXM5-80GB:1:mig-off,A30:1:mig-pending")
    a100, h100, a30 = (sim.nvmlDeviceGetHandleByIndex(i) for i in range(3))
    assert sim.nvmlDeviceGetMigMode(a100) == [0, 0]
    assert sim.nvmlDeviceGetMigMode(a30) == [0, 1]
    for h in (a100, a30):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            sim.nvmlDeviceCreateGpuInstance(h, 19)
        assert sim.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    assert sim.nvmlDeviceSetMigMode(a100, 1) == pynvml.NVML_ERROR_IN_USE  # Ampere: pending until a reset
    assert sim.nvmlDeviceGetMigMode(a100) == [0, 1]
    sim.reset_gpu(0)
    assert sim.nvmlDeviceGetMigMode(a100) == [1, 1]
    assert sim.nvmlDeviceSetMigMode(h100, 1) == pynvml.NVML_SUCCESS  # Hopper: at once
    assert sim.nvmlDeviceGetMigMode(h100) == [1, 1]


def test_lost_gpu_fails_every_call_for_that_device_only() -> None:
    sim = started("A100-SXM4-80GB:2")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = gi_at(sim, h, 19, 0, 1)
    sim.lose_gpu(0)
    for call in (lambda: sim.nvmlDeviceGetHandleByIndex(0), lambda: sim.nvmlDeviceGetUUID(h),
                 lambda: sim.nvmlGpuInstanceGetInfo(gi), lambda: sim.nvmlGpuInstanceDestroy(gi)):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call()
    assert sim.nvmlDeviceGetName(sim.nvmlDeviceGetHandleByIndex(1)) == "NVIDIA A100-SXM4-80GB"


def test_fault_injection_hooks_latency_and_counts() -> None:
    sim = started("A100-SXM4-80GB:1")
    h = sim.nvmlDeviceGetHandleByIndex(0)
    sim.fail("create_gi", nth=2, error=pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    gi_at(sim, h, 19, 0, 1)
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        gi_at(sim, h, 19, 1, 1)
    gi_at(sim, h, 19, 1, 1)  # rule consumed
    sim.fail("nvmlDeviceGetUUID", error=pynvml.NVML_ERROR_UNKNOWN, gpu=0)
    with pytest.raises(pynvml.NVMLError_Unknown):
        sim.nvmlDeviceGetUUID(h)
    seen: list[str] = []
    sim.on_call("destroy", 1, lambda: seen.append("before destroy"))
    sim.nvmlGpuInstanceDestroy(sim.nvmlDeviceGetGpuInstanceById(h, 7))
    assert seen == ["before destroy"]
    sim.reset_counts()
    sim.set_latency(0.01, ["nvmlDeviceGetCount"])
    sim.nvmlDeviceGetCount()
    gi_at(sim, h, 19, 2, 1)
    assert sim.calls == {"nvmlDeviceGetCount": 1, "nvmlDeviceCreateGpuInstanceWithPlacement": 1}
    assert sim.mutating_calls() == 1
    with pytest.raises(ValueError, match="unknown call kind"):
        sim.fail("explode")


def test_mig_uuids_are_new_on_each_creation_and_gpu_uuids_follow_the_seed() -> None:
    sim = started("A100-SXM4-80GB:1")
    first = sim.add_instance(0, "1g.10gb", 0)
    h = sim.nvmlDeviceGetHandleByIndex(0)
    gi = sim.nvmlDeviceGetGpuInstanceById(h, 7)
    ci = sim.nvmlGpuInstanceGetComputeInstanceById(gi, 0)
    sim.nvmlComputeInstanceDestroy(ci)
    sim.nvmlGpuInstanceDestroy(gi)
    assert sim.add_instance(0, "1g.10gb", 0) != first
    uuid = sim.nvmlDeviceGetUUID(h)
    assert started("A100-SXM4-80GB:1").nvmlDeviceGetUUID(h) == uuid
    assert started("A100-SXM4-80GB:1", seed=1).nvmlDeviceGetUUID(h) != uuid
