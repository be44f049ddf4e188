"""The doctor reaches NVML only through the read-only guard: no mutating call gets to the (simulated) driver."""

from __future__ import annotations

import re
from pathlib import Path

import pynvml
import pytest

from hami_mig.doctor import DoctorOptions, ReadOnlyNvml, ReadOnlyViolation, Report, is_read, run_doctor
from hami_mig.doctor import gpus as gpu_checks
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim
from hami_mig.testing.nvmlsim.caps import add_fake_process
from hami_mig.testing.nvmlsim.faults import KINDS

# Any name with one of these verbs could change a GPU (the conformance suite's former deny list, and more).
MUTATING = re.compile(r"Create|Destroy|Set|Reset|Clear|Register|Enable|Disable|Write|Inject|Modify|Remove|Freeze")


GETTERS = ("nvmlDeviceGet", "nvmlDeviceIs", "nvmlSystemGet", "nvmlGpuInstanceGet", "nvmlComputeInstanceGet")
MUTATING_CALLS = sorted(n for n in dir(pynvml) if n.startswith("nvml") and callable(getattr(pynvml, n))
                        and not n.startswith(GETTERS) and MUTATING.search(n))


def test_the_list_of_mutating_calls_is_real() -> None:
    assert {"nvmlDeviceSetMigMode", "nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlGpuInstanceDestroy",
            "nvmlComputeInstanceDestroy", "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceClearEccErrorCounts"} <= set(
        MUTATING_CALLS)


@pytest.mark.parametrize("name", MUTATING_CALLS)
def test_every_mutating_pynvml_call_is_refused(name: str) -> None:
    guard = ReadOnlyNvml(NvmlSim("A100-SXM4-80GB:1"))
    with pytest.raises(ReadOnlyViolation, match=name):
        getattr(guard, name)
    assert guard.refused == [name]


def test_reads_pass_and_mutating_c_symbols_refuse_when_called() -> None:
    sim = NvmlSim("A100-SXM4-80GB:1")
    guard = ReadOnlyNvml(sim)
    guard.nvmlInit()
    h = guard.nvmlDeviceGetHandleByIndex(0)
    assert guard.nvmlDeviceGetMigMode(h) == [1, 1]
    assert is_read("nvmlGpuInstanceGetComputeInstanceProfileInfoV") and not is_read("nvmlDeviceSetMigMode")
    create = guard._nvmlGetFunctionPointer("nvmlDeviceCreateGpuInstanceWithPlacement")  # looking up is harmless
    with pytest.raises(ReadOnlyViolation):
        create(h, 0, None, None)
    assert guard.refused == ["nvmlDeviceCreateGpuInstanceWithPlacement"]
    assert sim.mutating_calls() == 0


def _run(sim: NvmlSim, tmp_path: Path) -> Report:
    proc = tmp_path / "proc"
    add_fake_process(proc, 4242, "python3")
    return run_doctor(sim, DoctorOptions(node_name="node-a", simulated=True, proc_root=str(proc),
                                         kubelet_dir=str(tmp_path / "kubelet"), cdi_dir=str(tmp_path / "cdi")))


def test_no_mutating_call_reaches_the_driver(tmp_path: Path) -> None:
    """Counted in the simulator: every call the doctor made, on a node with every fault at once, is a read."""
    sim = NvmlSim("A100-SXM4-80GB:1,A30:1:mig-off,H100-SXM5-80GB:1:mig-pending,H200:1")
    sim.add_instance(0, "3g.40gb", 4, pids=[4242])
    sim.add_instance(3, "1g.18gb", 0)
    sim.set_gpu_processes(3, [4242])
    sim.drift_profile(3, "1g.18gb", memory_mib=17000)
    sim.set_gpu_name(3, "NVIDIA H200 XL")
    before = sim.snapshot()
    _run(sim, tmp_path)
    assert sim.calls, "the doctor read nothing"
    assert sim.mutating_calls() == 0
    assert [name for name in sim.calls if name in KINDS["mutating"] or not is_read(name.removeprefix("_c_"))] == []
    assert sim.snapshot() == before


def test_a_mutating_call_in_a_check_is_stopped_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a check to try a change (a bug), the guard stops it before the driver sees it, and says so."""
    def enabling(nvml: object, backend: NvmlBackend, index: int) -> bool:
        backend.set_mig_mode(index, True)
        return True

    monkeypatch.setattr(gpu_checks, "mig_capable", enabling)
    sim = NvmlSim("A100-SXM4-80GB:1:mig-off")
    report = _run(sim, tmp_path)
    assert sim.mutating_calls() == 0 and sim.snapshot()["gpus"][0]["mig_current"] == 0
    line = next(c for c in report.checks if c.check == "nvml.read-only")
    assert line.status == "fail" and "nvmlDeviceSetMigMode" in line.message
    assert report.exit_code() == 1
