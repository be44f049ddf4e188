"""`benchmarks/packing.py --dra`: the command behind the DRA figures in docs runs and prints every table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.packing_sim.dra_report import DRA_ROWS, order_table
from benchmarks.packing_sim.dra_runs import DraPlan

ROOT = Path(__file__).resolve().parents[2]


def test_dra_command_prints_every_dra_row() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/packing.py", "--dra", "--quick", "--pods", "120", "--jobs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    for title in ("## DRA: A100-SXM4-80GB x8", "## DRA curated: republish lag", "## DRA curated: ResourceSlice writes",
                  "## NVIDIA's device order by model"):
        assert title in out
    for name in (*DRA_ROWS, "best-fit/any"):
        assert f"\n{name} " in out, name


def test_order_table_flags_the_a100_40gb_name_order() -> None:
    table = order_table()
    line = next(x for x in table.splitlines() if x.startswith("NVIDIA A100-SXM4-40GB"))
    assert "1g.10gb (9984 MiB) before 1g.5gb (4864 MiB)" in line
    line = next(x for x in table.splitlines() if x.startswith("NVIDIA A100-SXM4-80GB"))
    assert line.rstrip().endswith("none")


def test_dra_plan_uses_the_main_benchmarks_traces() -> None:
    plan = DraPlan()
    specs = plan.specs()
    assert len(specs) == len(set(specs))
    head = [s for s in specs if (s.model, s.distribution, s.load) == ("A100-SXM4-80GB", "uniform", 1.2)]
    assert [s.seed for s in head] == [1, 2, 3, 4, 5] and all(s.pods == 3000 and s.gpus == 8 for s in head)
    assert {s.distribution for s in specs} == {"uniform", "small", "large", "bursty"}
