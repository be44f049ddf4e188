"""NVML and driver versions, the calls the library has, and the node's files (kubelet, CDI, toolkit)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hami_mig.testing.nvmlsim import NvmlSim
from tests.doctor.conftest import Run, require_no_driver

Node = Callable[..., tuple[NvmlSim, list[str]]]
Doctor = Callable[..., Run]


def test_versions_are_reported(node: Node, doctor: Doctor) -> None:
    _sim, args = node()
    run = doctor(*args, "--json")
    assert run.json()["nvml"] == {"driver_version": "580.65.06", "cuda_version": "13.0",
                                  "nvml_version": "13.580.65.06"}
    (line,) = doctor(*args).lines("ok", "nvml.driver")
    assert "driver 580.65.06 (R580), CUDA 13.0" in line


def test_r470_works_through_older_calls(node: Node, doctor: Doctor, monkeypatch: pytest.MonkeyPatch) -> None:
    sim, args = node()
    sim.add_instance(0, "2g.20gb", 2, pids=[5])
    monkeypatch.setenv("HAMI_MIG_SIM_DRIVER", "470.256.02")
    run = doctor(*args)
    assert run.code == 0
    assert "R470" in run.lines("ok", "nvml.driver")[0]
    (calls,) = run.lines("warn", "nvml.calls")
    assert "nvmlDeviceGetGpuInstanceProfileInfo for nvmlDeviceGetGpuInstanceProfileInfoV (R510+)" in calls
    assert "nvmlDeviceGetComputeRunningProcesses_v2 for nvmlDeviceGetComputeRunningProcesses_v3" in calls
    assert "in use by pids 5" in run.lines("warn", "gpu.instance")[0]  # processes read through _v2
    assert run.lines("ok", "gpu.profiles")  # derived names equal the catalogue's


def test_r450_is_too_old(node: Node, doctor: Doctor, monkeypatch: pytest.MonkeyPatch) -> None:
    _sim, args = node()
    monkeypatch.setenv("HAMI_MIG_SIM_DRIVER", "450.80.02")
    run = doctor(*args)
    assert run.code == 1
    (driver,) = run.lines("fail", "nvml.driver")
    assert "older than R470" in driver and "R470 or newer" in driver
    (calls,) = run.lines("fail", "nvml.calls")
    assert "nvmlDeviceCreateGpuInstanceWithPlacement (R460+" in calls
    assert run.lines("ok", "gpu.profiles")  # reading still works, through the v1 symbols


def test_nvml_that_does_not_load(doctor: Doctor, monkeypatch: pytest.MonkeyPatch) -> None:
    """On this machine there is no driver: the real backend says so in one failing line, and the rest still runs."""
    require_no_driver()
    run = doctor("--kubelet-dir", "/nonexistent/device-plugins")
    assert run.code == 1
    (line,) = run.lines("fail", "nvml.load")
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in line and "install the NVIDIA driver" in line
    assert run.lines("fail", "node.kubelet")


@pytest.fixture
def listen() -> Iterator[Callable[[Path], None]]:
    """Bind a unix socket at a path (closed after the test)."""
    socks: list[socket.socket] = []

    def bind(path: Path) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        socks.append(s)

    yield bind
    for s in socks:
        s.close()


def test_kubelet_directory(node: Node, doctor: Doctor, tmp_path: Path, listen: Callable[[Path], None]) -> None:
    _sim, args = node()
    kubelet_dir = tmp_path / "kl"
    kubelet_dir.mkdir()
    listen(kubelet_dir / "kubelet.sock")
    missing = doctor(*args, "--kubelet-dir", str(tmp_path / "nope"))
    assert missing.code == 1 and "does not exist" in missing.lines("fail", "node.kubelet")[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    no_sock = doctor(*args, "--kubelet-dir", str(empty)).lines("fail", "node.kubelet")[0]
    assert "no kubelet.sock socket" in no_sock and "--kubelet-dir" in no_sock
    run = doctor(*args, "--kubelet-dir", str(kubelet_dir))
    assert run.code == 0 and "is a socket; other plugin sockets: none" in run.lines("ok", "node.kubelet")[0]
    listen(kubelet_dir / "nvidia-gpu.sock")
    run = doctor(*args, "--kubelet-dir", str(kubelet_dir))
    (line,) = run.lines("warn", "node.device-plugin")
    assert "nvidia-gpu.sock exists" in line and "nvidia.com/gpu.deploy.device-plugin=false" in line


def test_cdi_directory_and_toolkit(node: Node, doctor: Doctor, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _sim, args = node()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr("hami_mig.doctor.node.TOOLKIT_DIRS", ())
    run = doctor(*args, "--cdi-dir", str(tmp_path / "cdi"))
    assert run.code == 0
    assert "does not exist" in run.lines("warn", "node.cdi")[0] and "enable_cdi" in run.lines("warn", "node.cdi")[0]
    assert "not found" in run.lines("warn", "node.toolkit")[0]
    (tmp_path / "cdi").mkdir()
    assert "nvidia-ctk cdi generate --output=" in doctor(*args, "--cdi-dir", str(tmp_path / "cdi")).lines(
        "warn", "node.cdi")[0]
    (tmp_path / "cdi" / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    (tmp_path / "bin").mkdir()
    ctk = tmp_path / "bin" / "nvidia-ctk"
    ctk.write_text("#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.8'\n")
    ctk.chmod(0o755)
    run = doctor(*args, "--cdi-dir", str(tmp_path / "cdi"))
    assert "nvidia.yaml and 0 hami-mig spec(s)" in run.lines("ok", "node.cdi")[0]
    assert "NVIDIA Container Toolkit CLI version 1.17.8" in run.lines("ok", "node.toolkit")[0]


def test_simulated_nodes_check_only_the_paths_given(node: Node, doctor: Doctor) -> None:
    _sim, args = node()
    checks = {c["check"] for c in doctor(*args, "--json").json()["checks"]}
    assert not checks & {"node.kubelet", "node.cdi", "node.toolkit", "node.gpu-clients", "cluster.api"}
