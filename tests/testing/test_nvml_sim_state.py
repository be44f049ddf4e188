"""The state file: two processes see the same GPUs, concurrent writers lose no update, mismatches are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hami_mig.errors import InputError
from hami_mig.testing.nvmlsim import NvmlSim, from_env

WORKER = textwrap.dedent("""
    import sys
    from hami_mig.testing.nvmlsim import NvmlSim
    path, gpu, starts = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
    sim = NvmlSim("A100-SXM4-80GB:2", state_file=path)
    for s in starts:
        sim.add_instance(gpu, "1g.10gb", s)
    print(len(sim.snapshot()["gpus"][gpu]["gis"]))
""")


def test_second_process_sees_and_changes_the_same_gpus(tmp_path: Path) -> None:
    path = tmp_path / "sim.json"
    sim = NvmlSim("A100-SXM4-80GB:2", state_file=path)
    uuid = sim.add_instance(0, "3g.40gb", 4)
    out = subprocess.run([sys.executable, "-c", WORKER, str(path), "0", "0,1"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "3"
    gis = sim.snapshot()["gpus"][0]["gis"]  # the first process re-reads the changed file
    assert sorted(g["start"] for g in gis) == [0, 1, 4]
    assert uuid in json.dumps(gis)


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "sim.json"
    NvmlSim("A100-SXM4-80GB:2", state_file=path)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(gpu), starts], stdout=subprocess.PIPE)
             for gpu, starts in ((0, "0,1,2,3,4,5,6"), (1, "6,5,4,3,2,1,0"))]
    for p in procs:
        assert p.wait(timeout=60) == 0
    snap = NvmlSim(state_file=path).snapshot()
    assert [len(g["gis"]) for g in snap["gpus"]] == [7, 7]
    assert not list(tmp_path.glob(".sim.json.*"))  # no temp files left behind


def test_env_var_and_spec_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sim.json"
    monkeypatch.setenv("HAMI_MIG_SIM_STATE", str(path))
    sim = from_env("H100-SXM5-80GB:1")
    assert path.exists() and sim.store.path == path
    assert from_env().snapshot() == sim.snapshot()  # no spec: whatever the file holds
    assert from_env("NVIDIA H100 80GB HBM3:1").snapshot() == sim.snapshot()  # same GPUs, other spelling
    with pytest.raises(InputError, match="already holds"):
        from_env("A30:1")


def test_bad_spec_names_the_problem() -> None:
    with pytest.raises(InputError, match=r"unknown GPU model.*known models"):
        NvmlSim("A100:2")
    with pytest.raises(InputError, match="count"):
        NvmlSim("A30:x")
    with pytest.raises(InputError, match="mode after the count"):
        NvmlSim("A30:1:mig-maybe")


def test_the_state_as_plain_data_is_what_asdict_gives() -> None:
    from dataclasses import asdict

    sim = NvmlSim("A100-SXM4-80GB:3")
    sim.add_instance(0, "1g.10gb", 1, pids=[3])
    sim.set_mig_index_holes(1, [2])
    sim.set_gpu_processes(2, [5])
    sim.fail("create_gi", 3)
    state = sim.store._state
    assert state is not None
    plain = state.to_json()
    assert plain == asdict(state) and list(plain["gpus"][0]) == list(asdict(state)["gpus"][0])
    plain["gpus"][0]["gis"][0]["cis"][0]["processes"][0][0] = 99  # a copy: the state is untouched
    assert state.gpus[0].gis[0].cis[0].processes == [[3, 512]]
