"""`hami-mig plan` contract: JSON shape, exit codes, one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hami_mig.cli import main

NODE = {
    "gpus": [
        {"index": 0, "uuid": "GPU-a", "model": "NVIDIA A100-SXM4-80GB",
         "instances": [{"profile": "1g.10gb", "start": 6, "in_use": True},
                       {"profile": "1g.10gb", "start": 2, "in_use": False}]},
    ]
}


def write(tmp_path: Path, doc: object, name: str = "node.json") -> str:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--node", write(tmp_path, NODE), "--memory", "15000", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["fits"] is True
    (a,) = doc["allocations"]
    assert set(a) == {"gpu_index", "gpu_uuid", "geometry_index", "slot", "profile", "start", "memory_mib", "reuse"}
    assert (a["gpu_uuid"], a["geometry_index"], a["profile"], a["reuse"]) == ("GPU-a", 1, "2g.20gb", False)
    # the free 1g.10gb@2 blocks a 2g at 2; the planner picks 0 and destroys nothing, or destroys it
    for op in doc["operations"]:
        assert set(op) >= {"op", "gpu_index", "profile", "start"}
    assert doc["operations"][-1]["op"] == "create"


def test_single_gpu_object_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--node", write(tmp_path, NODE["gpus"][0]), "--memory", "100", "--json")
    assert code == 0 and json.loads(out)["allocations"][0]["profile"] == "1g.10gb"


def test_nothing_fits_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--node", write(tmp_path, NODE), "--memory", "90000", "--json")
    assert code == 3
    doc = json.loads(out)
    assert doc["fits"] is False and "7g.80gb (80896 MiB)" in doc["reason"]


def test_human_output_is_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--node", write(tmp_path, NODE), "--memory-percentage", "25")
    assert code == 0
    assert "profile" in out and "2g.20gb" in out and "NVML operations" in out


@pytest.mark.parametrize(
    ("node", "args", "needle"),
    [
        ("{not json", [], "not valid JSON"),
        ({"gpus": [{"model": "NVIDIA H2", "instances": []}]}, [], "gpus[0].model: 'NVIDIA H2'"),
        ({"gpus": [{"model": "A100-SXM4-80GB", "instances": [{"profile": "3g.40gb", "start": 2}]}]}, [],
         "gpus[0].instances[0].start: 2"),
        ({"gpus": [{"model": "A100-SXM4-80GB", "instances": [{"profile": "3g.40gb", "start": 0},
                                                             {"profile": "2g.20gb", "start": 2}]}]}, [],
         "overlaps 3g.40gb@0"),
        ({"gpus": [{"model": "A100-SXM4-80GB", "instances": [{"profile": "7g.79gb", "start": 0}]}]}, [],
         "did you mean 7g.80gb"),
        (NODE, ["--memory", "-1"], "--memory -1: "),  # the flag the user typed, not the pod resource
        (NODE, ["--memory-percentage", "101"], "--memory-percentage 101: a whole percentage from 1 to 100"),
        (NODE, ["--count", "0"], "--count 0: "),
        ({"gpus": []}, [], "gpus: []"),
        ([1, 2], [], "node: 'list'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], node: object, args: list[str], needle: str
) -> None:
    code, _out, err = run(capsys, "plan", "--node", write(tmp_path, node), *args)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_device_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "dc.yaml"
    cfg.write_text("nvidia:\n  knownMigGeometries:\n  - models: [A100-SXM4-80GB]\n    allowedGeometries:\n"
                   "    - [ {name: 7g.79gb, memory: 80000, count: 1} ]\n")
    code, _, err = run(capsys, "plan", "--node", write(tmp_path, NODE), "--memory", "1", "--device-config", str(cfg))
    assert code == 2
    assert "knownMigGeometries[0].allowedGeometries[0] for A100-SXM4-80GB" in err and "7g.80gb" in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--node", "/nonexistent/node.json")
    assert code == 2 and "cannot read" in err


def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hami_mig", "plan", "--node", write(tmp_path, NODE),
                           "--memory", "1000", "--policy", "best-fit", "--geometries", "any", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fits"] is True
