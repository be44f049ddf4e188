"""A simulated node in a state file, the doctor run through the real CLI, and no cluster unless a test adds one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hami_mig.cli import main
from hami_mig.testing.nvmlsim import NvmlSim


@dataclass
class Run:
    code: int
    out: str
    err: str

    def lines(self, status: str | None = None, check: str | None = None) -> list[str]:
        rows = self.out.splitlines()[:-1]  # the last line is the summary
        return [r for r in rows if (status is None or r.startswith(status.upper()))
                and (check is None or r.split()[1] == check)]

    def json(self) -> Any:
        return json.loads(self.out)


def require_no_driver() -> None:
    """The no-driver path can only be shown where no NVIDIA driver is installed (a real one skips it)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return
    pynvml.nvmlShutdown()
    pytest.skip("a real NVIDIA driver is present here; the no-driver path cannot be shown")


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No kubeconfig, service account or NODE_NAME leaks in from the machine running the tests."""
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "NODE_NAME", "HAMI_MIG_SIM_STATE", "HAMI_MIG_SIM_DRIVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def node(tmp_path: Path) -> Callable[..., tuple[NvmlSim, list[str]]]:
    """A simulated node kept in a state file; returns it and the --backend sim arguments that reach it."""
    def make(spec: str = "A100-SXM4-80GB:1") -> tuple[NvmlSim, list[str]]:
        state = tmp_path / "sim.json"
        sim = NvmlSim(spec, state_file=state)
        return sim, ["--backend", "sim", "--sim-gpus", spec, "--sim-state", str(state)]
    return make


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Run]]:
    def run(*argv: str) -> Run:
        code = main(["doctor", *argv])
        out, err = capsys.readouterr()
        return Run(code, out, err)
    yield run
