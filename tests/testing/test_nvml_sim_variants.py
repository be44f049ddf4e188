"""The simulator's older drivers (missing symbols, raw v1 entry points) and GPUs unlike the catalogue."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pynvml
import pytest

from hami_mig.errors import InputError
from hami_mig.nvml.compat import ProcessInfoV1
from hami_mig.testing.nvmlsim import NvmlSim


def opened(sim: NvmlSim) -> tuple[NvmlSim, object]:
    sim.nvmlInit()
    return sim, sim.nvmlDeviceGetHandleByIndex(0)


def test_driver_versions() -> None:
    sim, _h = opened(NvmlSim("A30:1", driver_version="535.183.01"))
    assert sim.nvmlSystemGetDriverVersion() == "535.183.01"
    assert sim.nvmlSystemGetCudaDriverVersion() == 12020 and sim.nvmlSystemGetNVMLVersion() == "12.535.183.01"
    with pytest.raises(InputError, match="driver version"):
        NvmlSim("A30:1", driver_version="r535")


def test_r460_has_ci_info_v2_but_not_placements_v2() -> None:
    sim, h = opened(NvmlSim("A100-SXM4-40GB:1", driver_version="460.106.00"))
    symbols = sim.exported_symbols()
    assert "nvmlComputeInstanceGetInfo_v2" in symbols and "nvmlDeviceCreateGpuInstanceWithPlacement" in symbols
    assert "nvmlDeviceGetGpuInstancePossiblePlacements_v2" not in symbols
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        sim.nvmlDeviceGetGpuInstancePossiblePlacements(h, 19, None, ctypes.byref(ctypes.c_uint()))
    assert sim.nvmlDeviceGetComputeRunningProcesses_v2(h) == []


def test_raw_v1_entry_points() -> None:
    sim, h = opened(NvmlSim("A100-SXM4-80GB:1", driver_version="450.80.02"))
    uuid = sim.add_instance(0, "2g.20gb", 2, pids=[31, 32])
    placements = sim._nvmlGetFunctionPointer("nvmlDeviceGetGpuInstancePossiblePlacements")
    count = ctypes.c_uint(0)
    assert placements(h, ctypes.c_uint(14), None, ctypes.byref(count)) == pynvml.NVML_ERROR_INVALID_ARGUMENT
    short = (pynvml.c_nvmlGpuInstancePlacement_t * 2)()
    assert placements(h, ctypes.c_uint(14), short, ctypes.byref(count)) == pynvml.NVML_ERROR_INSUFFICIENT_SIZE
    full = (pynvml.c_nvmlGpuInstancePlacement_t * 8)()
    assert placements(h, ctypes.c_uint(14), full, ctypes.byref(count)) == pynvml.NVML_SUCCESS
    assert [(p.start, p.size) for p in full[: count.value]] == [(0, 2), (2, 2), (4, 2)]

    mig = sim.nvmlDeviceGetHandleByUUID(uuid)
    procs = sim._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses")
    n = ctypes.c_uint(0)
    assert procs(mig, ctypes.byref(n), None) == pynvml.NVML_ERROR_INSUFFICIENT_SIZE and n.value == 2
    infos = (ProcessInfoV1 * 2)()
    assert procs(mig, ctypes.byref(n), infos) == pynvml.NVML_SUCCESS
    assert sorted(i.pid for i in infos) == [31, 32]

    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        sim._nvmlGetFunctionPointer("nvmlDeviceGetFanSpeed_v2")
    with pytest.raises(NotImplementedError, match="raw C entry point"):
        sim._nvmlGetFunctionPointer("nvmlDeviceGetName")(h)


def test_a_drifted_table_is_what_the_driver_reports_and_obeys(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    NvmlSim("A100-SXM4-80GB:1", state_file=state).drift_profile(0, "1g.10gb", memory_mib=9856, starts=[0, 1])
    sim, h = opened(NvmlSim("A100-SXM4-80GB:1", state_file=state))  # kept in the state file
    info = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0)
    assert info.memorySizeMB == 9856
    count = ctypes.c_uint(0)
    sim.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, None, ctypes.byref(count))
    assert count.value == 2
    place = pynvml.c_nvmlGpuInstancePlacement_t(start=5, size=1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        sim.nvmlDeviceCreateGpuInstanceWithPlacement(h, info.id, ctypes.byref(place))
    sim.drift_profile(0, "7g.80gb", absent=True)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE)
    with pytest.raises(ValueError, match="unknown change"):
        sim.drift_profile(0, "1g.10gb", memory=1)
    with pytest.raises(KeyError):
        sim.drift_profile(0, "1g.11gb", memory_mib=1)


def test_a_gpu_unlike_the_catalogue() -> None:
    sim, h = opened(NvmlSim("A30:2"))
    sim.set_gpu_name(0, "NVIDIA A30X")
    assert sim.nvmlDeviceGetName(h) == "NVIDIA A30X"
    sim.set_mig_capable(1, False)
    h1 = sim.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetMigMode(h1)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceSetMigMode(h1, 1)
    assert sim.nvmlDeviceGetMaxMigDeviceCount(h1) == 0
