"""`hami-mig explain`: per GPU, every geometry (or profile) considered and why, then the choice or the failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hami_mig.cli import COMMANDS, main

BUSY = {"gpus": [{"index": 0, "uuid": "GPU-a", "model": "NVIDIA A100-SXM4-80GB",
                  "instances": [{"profile": "3g.40gb", "start": 0, "in_use": True},
                                {"profile": "2g.20gb", "start": 4, "in_use": True}]}]}
TWO = {"gpus": [{"index": 0, "uuid": "GPU-a", "model": "NVIDIA A100-SXM4-80GB", "instances": []},
                {"index": 1, "uuid": "GPU-b", "model": "NVIDIA A100-SXM4-80GB",
                 "instances": [{"profile": "3g.40gb", "start": 4, "in_use": True}]}]}


def write(tmp_path: Path, doc: object) -> str:
    p = tmp_path / "node.json"
    p.write_text(json.dumps(doc))
    return str(p)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registered() -> None:
    assert "explain" in COMMANDS


def test_accepted_and_skipped_geometries_and_the_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--node", write(tmp_path, TWO), "--memory", "15000")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "request: 1 instance of 15000 MiB (policy hami, geometries config)"
    assert "GPU 0 GPU-a NVIDIA A100-SXM4-80GB" in lines
    assert ("  - geometry 0 (7x 1g.10gb): needs 15000 MiB; no free slot covers it (free slots: 7x 1g.10gb "
            "(9728 MiB))") in lines
    assert any(ln.startswith("  + geometry 1 (1x 1g.10gb + 3x 2g.20gb): fits: slot 1 2g.20gb@0") for ln in lines)
    assert "  first fit: geometry 1 is the first configured geometry that fits" in lines
    assert "  chosen: geometry 1 slot 1: creates 2g.20gb@0 (19968 MiB)" in lines
    assert "  - geometry 0 (7x 1g.10gb): no slot for the in-use 3g.40gb" in lines  # GPU 1
    assert "  not used: the request is served by GPU 0" in lines
    assert lines[-2] == "result: GPU 0: geometry 1 slot 1 creates 2g.20gb@0"
    assert lines[-1] == "NVML operations: create 2g.20gb@0 on GPU 0"


def test_failure_says_what_would_be_needed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--node", write(tmp_path, BUSY), "--memory", "30000",
                       "--geometries", "any", "--policy", "best-fit")
    assert code == 3
    assert "  - profile 3g.40gb (40192 MiB): no free placement: every start overlaps the in-use 3g.40gb@0 and " \
           "2g.20gb@4" in out
    assert "  - profile 1g.20gb (19968 MiB): too small (needs 30000 MiB)" in out
    assert out.splitlines()[-1] == (
        "result: does not fit: no MIG instance for 1 instance of 30000 MiB: needs 30000 MiB; largest placeable "
        "profile on GPU 0 (GPU-a) is 1g.20gb (19968 MiB) because 3g.40gb@0 and 2g.20gb@4 are in use")


def test_config_mode_failure_points_at_the_geometries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "--node", write(tmp_path, BUSY), "--memory", "8000")
    assert code == 3
    assert "  - geometry 2 (2x 3g.40gb): no slot for the in-use 2g.20gb" in out
    assert "could place 1g.10gb beside the in-use 3g.40gb@0 and 2g.20gb@4, but no configured geometry" in out


def test_json_and_invalid_geometries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "device-config.yaml"
    cfg.write_text("nvidia:\n  knownMigGeometries:\n  - models: [A100-SXM4-80GB]\n    allowedGeometries:\n"
                   "    - [{name: 1g.10gb, memory: 9728, count: 7}]\n"
                   "    - [{name: 7g.79gb, memory: 80000, count: 1}]\n")
    code, out, err = run(capsys, "explain", "--node", write(tmp_path, TWO), "--memory", "15000",
                         "--device-config", str(cfg), "--json")
    assert code == 2 and "7g.79gb" in err  # like `plan`, an invalid config is an input error offline
    code, out, _ = run(capsys, "explain", "--node", write(tmp_path, TWO), "--memory", "70000", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["fits"] is True
    gpu0 = doc["gpus"][0]
    assert [c["accepted"] for c in gpu0["considered"]] == [False, False, False, True]
    assert gpu0["chosen"] == "geometry 3 slot 0: creates 7g.80gb@0 (80896 MiB)"
    assert doc["gpus"][1]["failure"].startswith("needs 70000 MiB; largest placeable profile on GPU 1 (GPU-b)")


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "explain", "--node", str(tmp_path / "missing.json"), "--memory", "1")
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err
    code, _, err = run(capsys, "explain", "--node", write(tmp_path, TWO), "--memory", "-4")
    assert code == 2 and "--memory -4" in err and "nvidia.com" not in err
