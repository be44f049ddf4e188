"""`hami-mig doctor --backend sim` on simulated nodes with each GPU fault: one line naming it and its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

from hami_mig.testing.nvmlsim import NvmlSim
from hami_mig.testing.nvmlsim.caps import add_fake_process
from tests.doctor.conftest import Run

Node = Callable[..., tuple[NvmlSim, list[str]]]
Doctor = Callable[..., Run]


def test_a_healthy_node_is_all_ok(node: Node, doctor: Doctor) -> None:
    _sim, args = node("A100-SXM4-80GB:2,H100-SXM5-80GB:1")
    run = doctor(*args)
    assert run.code == 0, run.out
    assert run.lines("warn") == [] and run.lines("fail") == []
    assert len(run.lines("ok", "gpu.mig-mode")) == 3
    assert run.out.splitlines()[-1].endswith("0 warn, 0 fail")


def test_every_line_is_one_check_and_each_problem_carries_its_fix(node: Node, doctor: Doctor) -> None:
    sim, args = node("A100-SXM4-80GB:1,A30:1:mig-off")
    sim.add_instance(0, "1g.10gb", 0, pids=[9])
    run = doctor(*args)
    rows = run.out.splitlines()[:-1]
    assert rows and all(r.split()[0] in ("OK", "WARN", "FAIL") for r in rows)
    assert all(" -- fix: " in r for r in rows if not r.startswith("OK"))
    assert not any(" -- fix: " in r for r in rows if r.startswith("OK"))


def test_mig_disabled(node: Node, doctor: Doctor) -> None:
    _sim, args = node("A100-SXM4-80GB:1,A100-SXM4-80GB:1:mig-off")
    run = doctor(*args)
    assert run.code == 1
    (line,) = run.lines("fail")
    assert "gpu.mig-mode" in line and "GPU 1" in line and "MIG mode is disabled" in line
    assert "`sudo nvidia-smi -i 1 -mig 1`" in line and "--manage-mig-mode" in line


def test_mig_enable_pending_needs_a_reset(node: Node, doctor: Doctor) -> None:
    _sim, args = node("A100-SXM4-80GB:1:mig-pending")
    run = doctor(*args)
    assert run.code == 1
    line = run.lines("fail", "gpu.mig-mode")[0]
    assert "pending" in line and "needs a reset" in line and "`sudo nvidia-smi -i 0 -r`" in line
    assert "never resets" in line


def test_mig_disable_pending_is_a_warning(node: Node, doctor: Doctor) -> None:
    sim, args = node("H100-SXM5-80GB:1")
    sim.set_mig_mode(0, current=1, pending=0)
    run = doctor(*args)
    assert run.code == 0
    (line,) = run.lines("warn", "gpu.mig-mode")
    assert "disable is pending" in line and "`sudo nvidia-smi -i 0 -mig 1`" in line


def test_a_gpu_without_mig(node: Node, doctor: Doctor) -> None:
    sim, args = node("A100-SXM4-80GB:2")
    sim.set_mig_capable(1, False)
    run = doctor(*args)
    assert run.code == 0
    (line,) = run.lines("warn", "gpu.mig-mode")
    assert "GPU 1" in line and "not MIG-capable" in line and "filterdevices" in line
    sim.set_mig_capable(0, False)
    run = doctor(*args)
    assert run.code == 1
    assert "none of the 2 GPU(s) is MIG-capable" in run.lines("fail", "gpu.count")[0]


def test_foreign_instances(node: Node, doctor: Doctor) -> None:
    """A GI made by hand without its compute instance, and one split into two CIs: never touched, fix named."""
    sim, args = node("A100-SXM4-80GB:1")
    sim.nvmlInit()
    h = sim.nvmlDeviceGetHandleByIndex(0)
    four = sim.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_4_SLICE)
    gi_4g = sim.nvmlDeviceCreateGpuInstance(h, four.id)
    for _ in range(2):
        sim.nvmlGpuInstanceCreateComputeInstance(gi_4g, pynvml.NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE)
    sim.nvmlDeviceCreateGpuInstance(h, sim.nvmlDeviceGetGpuInstanceProfileInfo(h, 0).id)  # a 1g, no CI
    run = doctor(*args)
    assert run.code == 0
    foreign = run.lines("warn", "gpu.instance")
    assert len(foreign) == 2 and all("foreign: made outside hami-mig" in line for line in foreign)
    assert any("(2 compute instances)" in line for line in foreign)
    assert any("(no compute instance)" in line for line in foreign)
    assert all("`sudo nvidia-smi mig -i 0 -gi " in line and "-dgi" in line for line in foreign)


def test_an_unrecorded_busy_instance_is_foreign(node: Node, doctor: Doctor) -> None:
    sim, args = node("A100-SXM4-80GB:1")
    sim.add_instance(0, "3g.40gb", 4, pids=[4242])
    sim.add_instance(0, "1g.10gb", 0)
    run = doctor(*args)
    busy = [line for line in run.lines("warn", "gpu.instance") if "3g.40gb@4" in line]
    assert busy and "in use by pids 4242" in busy[0] and "foreign" in busy[0]
    assert any("1g.10gb@0" in line and "idle" in line for line in run.lines("ok", "gpu.instance"))
    (records,) = run.lines("warn", "gpu.instances")
    assert "records were not read" in records and "--kubeconfig" in records and "kubectl get pods" in records


def test_processes_hidden_from_the_doctor(node: Node, doctor: Doctor) -> None:
    sim, args = node("A100-SXM4-80GB:1")
    sim.add_instance(0, "2g.20gb", 0)
    sim.deny_process_queries(0)
    run = doctor(*args)
    line = run.lines("warn", "gpu.instance")[0]
    assert "cannot be queried" in line and "treats it as in use" in line and "root" in line


def test_a_holder_process_is_named(node: Node, doctor: Doctor, tmp_path: Path) -> None:
    sim, args = node("A100-SXM4-80GB:2")
    proc = tmp_path / "proc"
    add_fake_process(proc, 4343, "python3")
    add_fake_process(proc, 77, "nv-hostengine", ("/dev/nvidia1",))
    sim.set_gpu_processes(0, [4343])
    run = doctor(*args, "--proc-root", str(proc))
    assert run.code == 0
    holders = run.lines("warn", "gpu.holders")
    assert len(holders) == 2
    assert "GPU 0" in holders[0] and "python3 (pid 4343) on GPU 0" in holders[0]
    assert "nv-hostengine (pid 77, DCGM host engine) on /dev/nvidia1 (open)" in holders[1]
    assert all("NVML_ERROR_IN_USE" in line for line in holders)
    (clients,) = run.lines("warn", "node.gpu-clients")
    assert "nv-hostengine (pid 77, DCGM host engine)" in clients and "systemctl stop nvidia-dcgm" in clients


def test_a_drifted_profile_table(node: Node, doctor: Doctor) -> None:
    sim, args = node("H100-SXM5-80GB:1")
    sim.drift_profile(0, "1g.10gb", memory_mib=10496)  # the catalogue says 9984 MiB
    sim.drift_profile(0, "2g.20gb", max_count=2)
    run = doctor(*args)
    assert run.code == 0
    (line,) = run.lines("warn", "gpu.profiles")
    assert "largest memory drift 5.1%" in line and "1g.10gb memory +5.1%" in line
    assert "2g.20gb: max_count 3 -> 2" in line
    assert "`hami-mig devices --json`" in line


def test_a_gpu_model_not_in_the_catalogue(node: Node, doctor: Doctor) -> None:
    sim, args = node("A30:1")
    sim.set_gpu_name(0, "NVIDIA A30X")
    run = doctor(*args)
    assert run.code == 1
    (profiles,) = run.lines("warn", "gpu.profiles")
    assert "not in hami-mig's catalogue" in profiles and "nearest known model by profile table: NVIDIA A30" in profiles
    (geometry,) = run.lines("fail", "gpu.geometry")
    assert "no knownMigGeometries entry matches 'NVIDIA A30X'" in geometry
    assert "nearest: 'A30' (knownMigGeometries[0])" in geometry and "--geometries any" in geometry


def test_geometry_entry_is_named(node: Node, doctor: Doctor) -> None:
    _sim, args = node("H200:1")
    (line,) = doctor(*args).lines("ok", "gpu.geometry")
    assert "matches knownMigGeometries[6] (models entry 'H200-SXM5')" in line and "4 of 4 geometries fit" in line


@pytest.mark.parametrize("spec", ["A100-SXM4-80GB:1,A30:1:mig-off", "H100-SXM5-80GB:1:mig-pending"])
def test_the_doctor_changes_nothing(node: Node, doctor: Doctor, spec: str) -> None:
    sim, args = node(spec)
    if "A100" in spec:
        sim.add_instance(0, "1g.10gb", 0, pids=[1])
    before = sim.snapshot()
    doctor(*args, "--json")
    assert sim.snapshot() == before
