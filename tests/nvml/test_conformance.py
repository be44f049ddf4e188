"""The same read-only assertions against the simulator and, when a GPU is present, the real driver.

The real half never creates or destroys an instance and never changes MIG mode: it runs through the
doctor's read-only guard (hami_mig/doctor/readonly.py), which refuses any NVML call that is not a read.
The simulated halves play today's driver, R470 and R450 (only the v1 symbols). Run it on a GPU node with
`pytest tests/nvml/test_conformance.py -m gpu -rs` (it only reads).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from typing import Any

import pynvml
import pytest

from hami_mig.doctor import ReadOnlyNvml
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.state import check_layout
from hami_mig.nvml import NvmlBackend
from hami_mig.nvml.compat import c_call, has_symbol
from hami_mig.nvml.profiles import gi_profile_info, possible_placements, profile_name
from hami_mig.testing.nvmlsim import NvmlSim

_SKIP_CODES = (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_INVALID_ARGUMENT)
# Simulated drivers: today's, R470 (no `…V` profile info, no _v3 processes) and R450 (only the v1 symbols).
_SIM_DRIVERS = {"sim": "580.65.06", "sim-r470": "470.256.02", "sim-r450": "450.80.02"}


def _real() -> Any:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no real NVML here (nvmlInit: {type(exc).__name__}); the real-GPU half runs on a GPU node")
    pynvml.nvmlShutdown()
    return ReadOnlyNvml(pynvml)


def _sim(driver: str) -> Any:
    sim = NvmlSim("A100-SXM4-80GB:1,A30:1,H100-SXM5-80GB:1:mig-off,H200:1", driver_version=driver)
    sim.add_instance(0, "3g.40gb", 4, pids=[11])
    sim.add_instance(0, "1g.10gb", 1)
    sim.add_instance(1, "2g.12gb", 2)
    sim.add_instance(3, "1g.35gb", 0)
    return sim


@pytest.fixture(params=[*_SIM_DRIVERS, pytest.param("real", marks=pytest.mark.gpu)])
def nvml(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "real":
        module = _real()
    else:
        module = ReadOnlyNvml(_sim(_SIM_DRIVERS[request.param]))
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            module.nvmlDeviceGetCount()
    module.nvmlInit()
    yield module
    module.nvmlShutdown()
    assert module.refused == []


def mig_handles(nvml: Any) -> list[tuple[int, Any]]:
    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(h)
        except pynvml.NVMLError_NotSupported:
            continue
        if current == pynvml.NVML_DEVICE_MIG_ENABLE:
            out.append((i, h))
    return out


def test_identity(nvml: Any) -> None:
    assert nvml.nvmlDeviceGetCount() >= 1
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        assert isinstance(h, pynvml.c_nvmlDevice_t)
        assert isinstance(nvml.nvmlDeviceGetName(h), str) and nvml.nvmlDeviceGetName(h)
        assert nvml.nvmlDeviceGetUUID(h).startswith("GPU-")
        assert nvml.nvmlDeviceGetMemoryInfo(h).total > 0
        try:
            flag = nvml.nvmlDeviceIsMigDeviceHandle(h)
        except pynvml.NVMLError_NotSupported:
            continue
        assert isinstance(flag, ctypes.c_uint) and flag.value == 0


def test_profile_table(nvml: Any) -> None:
    """Through the calls the backend makes (the newest symbol the driver has, else v1)."""
    for _i, h in mig_handles(nvml):
        total_mib = nvml.nvmlDeviceGetMemoryInfo(h).total // 2**20
        with pytest.raises(pynvml.NVMLError) as exc:
            gi_profile_info(nvml, h, pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT)
        assert exc.value.value in _SKIP_CODES
        ids = set()
        for enum in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = gi_profile_info(nvml, h, enum)
            except pynvml.NVMLError as err:
                assert err.value in _SKIP_CODES
                continue
            assert info.id not in ids
            ids.add(info.id)
            name = profile_name(info, enum, total_mib)
            m = re.match(r"^(\d+)g\.\d+gb", name)
            assert m and int(m.group(1)) == info.sliceCount, name
            assert 0 < info.memorySizeMB <= total_mib and info.instanceCount >= 1
            places = possible_placements(nvml, h, info.id)
            assert places and len({s for s, _ in places}) == len(places)
            assert len({size for _, size in places}) == 1 and all(s + z <= 8 for s, z in places)
            assert 0 <= nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, info.id) <= info.instanceCount


def test_versioned_calls_agree_with_v1(nvml: Any) -> None:
    """Where the driver has both, the `…V` / `_v2` answers equal the v1 ones hami-mig falls back to."""
    for _i, h in mig_handles(nvml):
        for enum in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                v1 = nvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum, 1)
            except pynvml.NVMLError as err:
                assert err.value in _SKIP_CODES
                continue
            if has_symbol(nvml, "nvmlDeviceGetGpuInstanceProfileInfoV"):
                v2 = nvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
                assert (v1.id, v1.memorySizeMB, v1.instanceCount) == (v2.id, v2.memorySizeMB, v2.instanceCount)
                name = v2.name.decode() if isinstance(v2.name, bytes) else v2.name
                assert name.startswith("MIG ")
            else:
                with pytest.raises(pynvml.NVMLError_FunctionNotFound):
                    nvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
            n = ctypes.c_uint(0)
            if not has_symbol(nvml, "nvmlDeviceGetGpuInstancePossiblePlacements_v2"):
                with pytest.raises(pynvml.NVMLError_FunctionNotFound):
                    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, v1.id, None, ctypes.byref(n))
                continue
            nvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, v1.id, None, ctypes.byref(n))
            arr = (pynvml.c_nvmlGpuInstancePlacement_t * n.value)()
            nvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, v1.id, arr, ctypes.byref(n))
            v2_places = [(p.start, p.size) for p in arr[: n.value]]
            if has_symbol(nvml, "nvmlDeviceGetGpuInstancePossiblePlacements"):  # the v1 symbol older drivers have
                old = (pynvml.c_nvmlGpuInstancePlacement_t * 8)()
                c_call(nvml, "nvmlDeviceGetGpuInstancePossiblePlacements", h, ctypes.c_uint(v1.id), old,
                       ctypes.byref(n))
                assert [(p.start, p.size) for p in old[: n.value]] == v2_places


def test_backend_view_matches_the_catalogue(nvml: Any) -> None:
    backend = NvmlBackend(nvml)
    for dev in backend.devices():
        if not dev.mig_enabled:
            assert dev.message
            continue
        assert dev.model is not None
        state = dev.to_gpu_state()
        check_layout(state.model, state.instances)
        known = default_catalogue().find(dev.name)
        if known is None:
            continue
        mine = {p.nvml_profile_id: p for p in dev.model.profiles}
        for p in known.profiles:
            got = mine.get(p.nvml_profile_id)
            assert got is not None, f"{dev.name}: NVML lacks {p.name}"
            assert (got.compute_slices, got.memory_slices, got.max_count, got.starts, got.smi_profile_id) == (
                p.compute_slices, p.memory_slices, p.max_count, p.starts, p.smi_profile_id)
            assert abs(got.memory_mib - p.memory_mib) <= 0.05 * p.memory_mib  # drifts with the driver


def test_mig_device_walk(nvml: Any) -> None:
    backend = NvmlBackend(nvml)
    for i, h in mig_handles(nvml):
        gi_ids = {hw.gi_id for hw in backend.device(i).instances}
        for n in range(nvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(h, n)
            except pynvml.NVMLError_NotFound:
                continue
            assert nvml.nvmlDeviceIsMigDeviceHandle(mig).value == 1
            assert nvml.nvmlDeviceGetUUID(mig).startswith("MIG-")
            assert nvml.nvmlDeviceGetGpuInstanceId(mig) in gi_ids
            assert nvml.nvmlDeviceGetMemoryInfo(mig).total > 0
