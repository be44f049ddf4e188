"""scripts/gpu-check.sh: its one JSON report, assembled here from a simulated node (no GPU is lent to CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hami_mig.doctor.hwreport import default_name, main
from tests.doctor.conftest import require_no_driver

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def check(tmp_path: Path, *args: str, **env: str) -> tuple[int, Any, str]:
    full = {**os.environ, "PYTHON": sys.executable, **env}
    full.pop("HAMI_MIG_SIM_STATE", None)
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=300, check=False)
    path = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    report = json.loads((tmp_path / path).read_text()) if path is not None else None
    return proc.returncode, report, proc.stderr


def test_the_report_on_a_simulated_node(tmp_path: Path) -> None:
    code, report, err = check(tmp_path, "report.json",
                              GPU_CHECK_BACKEND="sim", GPU_CHECK_SIM_GPUS="H100-SXM5-80GB:1,A30:1")
    assert code == 0, err
    assert report["backend"] == "sim" and report["hami_mig_version"]
    doctor, devices, suite = report["doctor"], report["devices"], report["conformance"]
    assert doctor["exit_code"] == 0 and doctor["output"]["summary"]["fail"] == 0
    assert {c["check"] for c in doctor["output"]["checks"]} >= {"nvml.load", "nvml.calls", "gpu.profiles"}
    assert [g["name"] for g in devices["output"]["gpus"]] == ["NVIDIA H100 80GB HBM3", "NVIDIA A30"]
    assert suite["exit_code"] == 0 and suite["failed"] == suite["error"] == 0 and suite["passed"] >= 10
    assert all("[sim" in t["name"] for t in suite["tests"]) and suite["ran_on_hardware"] is False
    assert report["host"]["hostname"]


def test_without_a_gpu_the_report_says_why(tmp_path: Path) -> None:
    require_no_driver()
    code, report, _err = check(tmp_path)
    assert code == 1
    assert (tmp_path / "gpu-check-no-gpu.json").is_file()
    assert report["doctor"]["output"]["checks"][0]["check"] == "nvml.load"
    assert report["doctor"]["output"]["checks"][0]["status"] == "fail"
    assert report["devices"]["exit_code"] == 1 and "cannot initialise NVML" in report["devices"]["stderr"]
    assert report["conformance"]["passed"] == 0 and report["conformance"]["skipped"] >= 1


def test_bad_usage(tmp_path: Path) -> None:
    code, _report, err = check(tmp_path, GPU_CHECK_BACKEND="gpu")
    assert code == 2 and "GPU_CHECK_BACKEND=gpu is not valid" in err
    assert main(["only-one"]) == 2


def test_the_default_name_carries_the_gpu_model() -> None:
    gpus = {"output": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}]}}
    assert default_name(gpus) == "gpu-check-NVIDIA-H100-80GB-HBM3.json"
    assert default_name({"output": None}) == "gpu-check-no-gpu.json"
