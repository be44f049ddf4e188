"""`hami-mig devices` / `hami-mig apply`: JSON contract, plan -> apply -> devices round trip, exit codes."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hami_mig.cli import main
from hami_mig.testing.nvmlsim import NvmlSim


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, doc: object, name: str = "plan.json") -> str:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def sim_args(state: Path, spec: str = "A100-SXM4-80GB:2") -> list[str]:
    return ["--backend", "sim", "--sim-gpus", spec, "--sim-state", str(state)]


def shared_json() -> dict[str, Any]:
    text = resources.files("hami_mig.mig").joinpath("data/mig_profiles.json").read_text("utf-8")
    return dict(json.loads(text))


def test_devices_lists_exactly_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "--backend", "sim", "--sim-gpus", "A100-SXM4-40GB:1", "--json")
    assert code == 0
    (gpu,) = json.loads(out)["gpus"]
    want = next(m for m in shared_json()["models"] if m["name"] == "NVIDIA A100-SXM4-40GB")
    assert (gpu["name"], gpu["memory_mib"], gpu["mig_mode"], gpu["instances"]) == (want["name"], 40960, "enabled", [])
    got = {p["name"]: (p["nvml_profile_id"], p["memory_mib"], p["compute_slices"], p["memory_slices"],
                       p["max_count"], p["placements"]) for p in gpu["profiles"]}
    assert got == {p["name"]: (p["nvml_profile_id"], p["memory_mib"], p["compute_slices"], p["memory_slices"],
                               p["max_count"], p["placements"]) for p in want["profiles"]}


def test_plan_apply_devices_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sim.json"
    busy = NvmlSim("A100-SXM4-80GB:2", state_file=state).add_instance(0, "3g.40gb", 4, pids=[31])
    code, out, _ = run(capsys, "devices", *sim_args(state), "--json")
    gpus = json.loads(out)["gpus"]
    node = {"gpus": [{"index": g["index"], "uuid": g["uuid"], "model": g["name"],
                      "instances": [{"profile": i["profile"], "start": i["start"], "in_use": bool(i["processes"])}
                                    for i in g["instances"]]} for g in gpus]}
    code, out, _ = run(capsys, "plan", "--node", write(tmp_path, node, "node.json"), "--memory", "18000",
                       "--geometries", "any", "--json")
    assert code == 0
    plan = json.loads(out)
    code, out, err = run(capsys, "apply", "--plan", write(tmp_path, plan), *sim_args(state))
    assert code == 0, err
    applied = json.loads(out)
    assert applied["applied"] is True and applied["created"]
    code, out, _ = run(capsys, "devices", *sim_args(state), "--json")
    after = json.loads(out)["gpus"]
    for a in plan["allocations"]:
        rows = [i for i in after[a["gpu_index"]]["instances"]
                if (i["profile"], i["start"]) == (a["profile"], a["start"])]
        assert rows and rows[0]["mig_uuid"] in {c["mig_uuid"] for c in applied["created"]}
    assert busy in {i["mig_uuid"] for i in after[0]["instances"]}
    code, out, _ = run(capsys, "apply", "--plan", write(tmp_path, plan), *sim_args(state))  # again: no-op
    assert code == 0 and json.loads(out)["created"] == []


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sim.json"
    sim = NvmlSim("A100-SXM4-80GB:1", state_file=state)
    sim.add_instance(0, "1g.10gb", 0, pids=[1])
    before = sim.snapshot()
    ok = {"fits": True, "operations": [{"op": "create", "gpu_index": 0, "profile": "2g.20gb", "start": 2}]}
    code, out, _ = run(capsys, "apply", "--plan", write(tmp_path, ok), *sim_args(state, "A100-SXM4-80GB:1"),
                       "--dry-run")
    assert code == 0 and json.loads(out)["operations"][0]["outcome"] == "create"
    bad = {"fits": True, "operations": [{"op": "destroy", "gpu_index": 0, "profile": "1g.10gb", "start": 0}]}
    code, out, err = run(capsys, "apply", "--plan", write(tmp_path, bad), *sim_args(state, "A100-SXM4-80GB:1"),
                         "--dry-run")
    assert code == 3 and "in use" in err and json.loads(out)["ok"] is False
    assert sim.snapshot() == before


def test_apply_failure_exits_3_naming_the_nvml_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sim.json"
    NvmlSim("A100-SXM4-80GB:1", state_file=state).add_instance(0, "1g.10gb", 3)
    plan = {"fits": True, "operations": [{"op": "create", "gpu_index": 0, "profile": "1g.10gb", "start": 6},
                                         {"op": "create", "gpu_index": 0, "profile": "2g.20gb", "start": 2}]}
    code, out, err = run(capsys, "apply", "--plan", write(tmp_path, plan), *sim_args(state, "A100-SXM4-80GB:1"))
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "create 2g.20gb@2 on GPU 0" in err and "NVML_ERROR_INSUFFICIENT_RESOURCES" in err
    assert "rolled back" in err


OP = {"op": "create", "gpu_index": 0, "profile": "1g.10gb", "start": 0}


@pytest.mark.parametrize(("doc", "needle"), [
    ("{not json", "not valid JSON"),
    ([], "plan: 'list'"),
    ({"fits": False, "reason": "no room"}, "plan.fits: False"),
    ({"operations": []}, "plan.fits: None"),
    ({"fits": True, "operations": {}}, "plan.operations"),
    ({"fits": True, "operations": [{**OP, "op": "move"}]}, "operations[0].op: 'move'"),
    ({"fits": True, "operations": [{**OP, "profile": "1g.11gb"}]}, "did you mean 1g.10gb"),
    ({"fits": True, "operations": [{**OP, "gpu_index": 9}]}, "operations[0].gpu_index: 9"),
    ({"fits": True, "operations": [{**OP, "gpu_index": True}]}, "operations[0].gpu_index: True"),
    ({"fits": True, "operations": [{**OP, "start": 7}]}, "operations[0].start: 7"),
    ({"fits": True, "operations": [{**OP, "gpu_uuid": "GPU-other"}]}, "operations[0].gpu_uuid"),
    ({"fits": True, "operations": [{"op": "create"}]}, "operations[0].gpu_index"),
])
def test_bad_plans_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object,
                                         needle: str) -> None:
    code, out, err = run(capsys, "apply", "--plan", write(tmp_path, doc), "--backend", "sim")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_options_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "apply", "--plan", str(tmp_path / "none.json"), "--backend", "sim")
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "devices", "--backend", "sim", "--sim-gpus", "Z100:1")
    assert code == 2 and "unknown GPU model" in err
    code, _, err = run(capsys, "devices", "--sim-gpus", "A30:1")
    assert code == 2 and "--sim-gpus only applies with --backend sim" in err
    (tmp_path / "broken.json").write_text("{}")
    code, _, err = run(capsys, "devices", "--backend", "sim", "--sim-state", str(tmp_path / "broken.json"))
    assert code == 2 and "simulator state" in err


@pytest.mark.gpu  # skips where a real driver is present: the no-driver path cannot be shown there
def test_nvml_backend_without_a_driver_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("a real NVML driver is present here; the no-driver path cannot be shown")
    code, out, err = run(capsys, "devices", "--backend", "nvml")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "cannot initialise NVML: NVML_ERROR_" in err


def test_devices_table_and_env_state(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "env.json"
    monkeypatch.setenv("HAMI_MIG_SIM_STATE", str(state))
    NvmlSim("A100-SXM4-80GB:1,A30:1:mig-off", state_file=state).add_instance(0, "2g.20gb", 0, pids=[42])
    code, out, _ = run(capsys, "devices", "--backend", "sim")
    assert code == 0
    assert "GPU 0  NVIDIA A100-SXM4-80GB" in out and "2g.20gb" in out and "42" in out
    assert "MIG disabled" in out and "nvidia-smi -i 1 -mig 1" in out
