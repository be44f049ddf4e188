"""`hami-mig demo` runs to its summary non-interactively (the README's first command)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.demo.compare import BEST_FIT, DEFAULT, run_settings
from hami_mig.demo.scenario import default_scenario, parse_scenario
from hami_mig.errors import InputError


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hami_mig", "demo", *args], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def test_default_demo_runs_the_default_then_best_fit_and_compares() -> None:
    proc = run_demo()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first = out.index("run 1 of 2: --policy hami --geometries config (the default)")
    second = out.index("run 2 of 2: --policy best-fit --geometries any (opt-in)")
    table = out.index("side by side")
    assert first < second < table
    assert "summary (hami / config)" in out[first:second] and "summary (best-fit / any)" in out[second:table]
    assert "reuses the free instance" in out  # a freed instance handed out again with no NVML op
    assert "destroy 7g.80gb@0" in out[second:]  # best-fit's reshape step
    assert "hami.io/vgpu-devices-allocated" in out
    assert "HAMi geometry" in out and "outside HAMi's geometries" in out and "How to read a GPU picture" in out
    assert "Traceback" not in proc.stderr
    rows = {line[:38].strip(): line[38:].split() for line in out[table:].splitlines()[1:6]}
    assert rows["pods admitted"] == ["6", "of", "11", "9", "of", "11"]
    assert rows["refused although the GPUs had room"] == ["2", "0"]


def test_steps_are_numbered_consecutively_and_refusals_stay_short() -> None:
    proc = run_demo("--policy", "hami")
    assert proc.returncode == 0, proc.stderr
    numbers = [int(m) for m in re.findall(r"^\[(\d+)\] ", proc.stdout, flags=re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) == 15
    assert "side by side" not in proc.stdout  # one setting asked for: one run
    refusal = proc.stdout[proc.stdout.index("[4] submit whole"):proc.stdout.index("[5] submit train")]
    lines = [line for line in refusal.splitlines() if line.strip() and not line.startswith("#")][1:]
    assert 1 <= len(lines) <= 3 and all(len(line) <= 100 for line in lines), lines
    assert "GPU-" not in refusal and "pod default/whole" not in refusal


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


def test_the_embedded_scenarios_notes_hold_under_both_settings() -> None:
    """Each note says what happens in the default run and in the best-fit run alike."""
    lines: list[str] = []
    base = AgentConfig(node_name="demo-node", reconcile_interval_s=3600, events=False)
    summaries = run_settings(default_scenario(), base, [DEFAULT, BEST_FIT], lines.append)
    text = "\n".join(lines)
    runs = text.split("==== run 2 of 2")
    for run, summary in zip(runs, summaries, strict=True):
        refused = {r.split(":")[0] for r in summary.refusals}
        # small pods each get a 1g.10gb; requests no GPU can serve (or not allowed here) are refused
        assert {"infer-a", "infer-b", "infer-c", "infer-d", "embed", "embed-2"}.isdisjoint(refused)
        assert {"huge", "wrong-mode"} <= refused
        # half a GPU fits only where the small pods were packed into one half (best-fit), not in HAMi's layouts
        assert ("train" in refused) == (summary.label == "hami / config")
        for pod in ("infer-a", "infer-b"):
            step = run[run.index(f"submit {pod}:"):]
            assert "1g.10gb@" in step.splitlines()[1]
        # a whole GPU only where nothing is in use: refused exactly when both GPUs held instances
        whole = run[run.index("submit whole:"):run.index("submit train:")]
        assert ("refused" in whole) == (summary.label == "hami / config")
        # the freed 2g.20gb goes to the next pod of that size with no NVML operation
        last = run[run.index("submit embed-2:"):]
        assert "reuses the free instance 2g.20gb" in last and "NVML: nothing" in last
    # a free instance of the right profile is handed out again, with no NVML operation, under both settings
    for run in runs:
        infer_c = run[run.index("submit infer-c:"):run.index("restart agent")]
        assert "reuses the free instance 1g.10gb" in infer_c and "NVML: nothing" in infer_c
        assert "why not the free" not in infer_c


def test_serve_checks_its_port_before_the_scenario() -> None:
    proc = run_demo("--serve", "--metrics-port", "99999")
    assert proc.returncode == 2 and "--metrics-port" in proc.stderr and proc.stdout == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = run_demo("--serve", "--metrics-port", str(taken.getsockname()[1]))
    assert proc.returncode == 1 and "Address already in use" in proc.stderr and proc.stdout == ""


def test_broken_scenario_yaml_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n- submit: a\n  gpumem: [\n")
    proc = run_demo("--scenario", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"{bad}: invalid YAML at line 4, column 1" in proc.stderr
