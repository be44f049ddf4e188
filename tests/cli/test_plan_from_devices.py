"""`devices --json` -> `plan --node -` -> `apply --plan -`: a node planned from what NVML shows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hami_mig.cli import main
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.node_file import parse_node
from hami_mig.testing.nvmlsim import NvmlSim


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str,
        stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def node(tmp_path: Path) -> list[str]:
    """A simulated node: GPU 0 with a busy 3g.40gb@0 and a free 1g.10gb@6, GPU 1 with MIG off."""
    state = tmp_path / "sim.json"
    sim = NvmlSim("A100-SXM4-80GB:1,A100-SXM4-80GB:1:mig-off", state_file=state)
    sim.add_instance(0, "3g.40gb", 0, pids=[4242])
    sim.add_instance(0, "1g.10gb", 6)
    return ["--backend", "sim", "--sim-state", str(state)]


def test_devices_output_is_a_node_file(node: list[str], capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, devices, _ = run(capsys, monkeypatch, "devices", *node, "--json")
    assert code == 0
    (gpu,) = parse_node(json.loads(devices), default_catalogue())  # the MIG-off GPU cannot be planned on
    assert gpu.index == 0 and gpu.uuid == json.loads(devices)["gpus"][0]["uuid"]
    assert [(i.profile, i.start, i.in_use) for i in gpu.instances] == [("3g.40gb", 0, True), ("1g.10gb", 6, False)]


def test_plan_reads_devices_on_stdin_and_apply_carries_it_out(node: list[str], capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, devices, _ = run(capsys, monkeypatch, "devices", *node, "--json")
    best_fit = ("--policy", "best-fit", "--geometries", "any")
    code, out, _ = run(capsys, monkeypatch, "plan", "--node", "-", "--memory", "9000", *best_fit, stdin=devices)
    assert code == 0 and "reuse free instance" in out and "NVML operations: none" in out  # the idle 1g.10gb@6
    code, out, _ = run(capsys, monkeypatch, "plan", "--node", "-", "--memory", "9000", stdin=devices)
    assert code == 0 and "destroy 1g.10gb@6" in out and "3g.40gb@0" not in out  # HAMi's rule: geometry 2
    code, plan, _ = run(capsys, monkeypatch, "plan", "--node", "-", "--memory", "15000", *best_fit, "--json",
                        stdin=devices)
    assert code == 0 and [o["op"] for o in json.loads(plan)["operations"]][-1] == "create"
    code, applied, err = run(capsys, monkeypatch, "apply", *node, "--plan", "-", stdin=plan)
    assert code == 0, err
    created = json.loads(applied)["created"][0]
    _, after, _ = run(capsys, monkeypatch, "devices", *node, "--json")
    rows = json.loads(after)["gpus"][0]["instances"]
    assert (created["profile"], created["start"]) in {(r["profile"], r["start"]) for r in rows}
    assert ("3g.40gb", 0) in {(r["profile"], r["start"]) for r in rows}  # the busy instance is untouched


def test_a_node_with_no_mig_gpu_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    state = str(tmp_path / "off.json")
    _, devices, _ = run(capsys, monkeypatch, "devices", "--backend", "sim", "--sim-gpus", "A30:1:mig-off",
                        "--sim-state", state, "--json")
    code, out, err = run(capsys, monkeypatch, "plan", "--node", "-", "--memory", "1000", stdin=devices)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "GPU 0 (MIG disabled)" in err and "at least one GPU with MIG enabled" in err


def test_a_foreign_shaped_instance_from_devices_is_in_use(node: list[str], capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU instance whose compute instance does not span it (another tool made it) is never planned on,
    processes or not: the agent's own rule (`GpuDevice.to_gpu_state`), carried by `standard` in the rows."""
    _, devices, _ = run(capsys, monkeypatch, "devices", *node, "--json")
    doc = json.loads(devices)
    rows = doc["gpus"][0]["instances"]
    assert [r["standard"] for r in rows] == [True, True]
    free = next(r for r in rows if r["profile"] == "1g.10gb")
    free["standard"] = False  # as `devices --json` prints a 3g.40gb GI holding a 1-slice compute instance
    (gpu,) = parse_node(doc, default_catalogue())
    assert [(i.profile, i.start, i.in_use) for i in gpu.instances] == [("3g.40gb", 0, True), ("1g.10gb", 6, True)]
