"""`hami-mig demo` runs to its summary non-interactively (the README's first command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hami_mig.demo.scenario import default_scenario, parse_scenario
from hami_mig.errors import InputError


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hami_mig", "demo", *args], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def test_default_demo_runs_to_its_summary() -> None:
    proc = run_demo()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "summary" in out
    assert "pods submitted: 11, admitted: 9, refused: 2" in out
    assert "reuses the free instance" in out  # a freed instance handed out again with no NVML op
    assert "destroy 7g.80gb@0" in out  # the reshape step
    assert "hami.io/vgpu-devices-allocated" in out
    assert "Traceback" not in proc.stderr


def test_custom_scenario_and_hami_policy(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("sim_gpus: H100-SXM5-80GB:1\nsteps:\n- submit: a\n  gpumem: 5000\n"
                        "- submit: b\n  gpumem-percentage: 50\n- finish: a\n")
    proc = run_demo("--scenario", str(scenario), "--policy", "hami", "--geometries", "config")
    assert proc.returncode == 0, proc.stderr
    assert "NVIDIA H100 80GB HBM3" in proc.stdout
    assert "pods submitted: 2" in proc.stdout


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("steps:\n- submit: a\n  gpumemory: 5\n", "steps[0].gpumemory"),
        ("steps:\n- finish: ghost\n", "steps[0].finish"),
        ("steps:\n- submit: a\n- submit: a\n", "steps[1].submit"),
        ("steps:\n- dance: a\n", "steps[0]"),
        ("steps: 3\n", "scenario"),
        ("steps:\n- submit: a\n  gpumem: lots\n", "steps[0].gpumem"),
    ],
)
def test_bad_scenarios_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as err:
        parse_scenario(text)
    assert err.value.field == field


def test_bad_scenario_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n- finish: ghost\n")
    proc = run_demo("--scenario", str(bad))
    assert proc.returncode == 2
    assert "steps[0].finish" in proc.stderr and "Traceback" not in proc.stderr


def test_embedded_scenario_parses() -> None:
    s = default_scenario()
    assert s.sim_gpus == "A100-SXM4-80GB:2" and len(s.steps) > 10
