"""`hami-mig check-config`: a device-config checked before rollout; plan and explain refuse what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hami_mig.cli import main
from hami_mig.mig.geometry import default_device_config, dump_device_config

TYPO = "nvidia:\n  resourceCountName: nvidia.com/gpu\n  knownMigGeometrys: []\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "device-config.yaml"
    path.write_text(text)
    return str(path)


def test_a_misspelt_key_is_an_error_naming_the_key_meant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, TYPO)
    code, out, _ = run(capsys, "check-config", path)
    assert code == 2
    assert out.splitlines()[0] == ("error: nvidia.knownMigGeometrys: unknown key 'knownMigGeometrys' (did you mean "
                                   "'knownMigGeometries'?); HAMi ignores it")
    assert out.splitlines()[-1].startswith(f"{path}: not usable (1 errors")
    code, out, _ = run(capsys, "check-config", path, "--json")
    report = json.loads(out)
    assert code == 2 and not report["ok"]
    assert report["unknown_keys"] == [{"path": "nvidia.knownMigGeometrys", "key": "knownMigGeometrys",
                                       "nearest": "knownMigGeometries"}]


@pytest.mark.parametrize("command", ["plan", "explain"])
def test_plan_and_explain_refuse_it_too(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    path = write(tmp_path, TYPO)
    code, out, err = run(capsys, command, "--node", "examples/node.json", "--memory", "9000", "--device-config", path)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "nvidia.knownMigGeometrys: unknown key" in err and "did you mean 'knownMigGeometries'" in err


def test_hamis_own_table_is_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check-config", write(tmp_path, dump_device_config(default_device_config())))
    assert code == 0 and out.splitlines()[-1].endswith(": ok (0 errors, 53 warnings)")
    assert "(and 9 more like it; --json lists them)" in out  # nominal memories: one line per entry


def test_an_invalid_geometry_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check-config", "examples/device-config-typo.yaml")
    assert code == 2 and "7g.79gb is not a MIG profile of this GPU (nearest real profile: 7g.80gb)" in out


def test_unreadable_and_broken_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-config", str(tmp_path / "missing.yaml"))
    assert (code, out) == (2, "") and "cannot read" in err and err.count("\n") == 1
    path = write(tmp_path, "nvidia:\n  knownMigGeometries: [\n")
    for argv in (["check-config", path], ["plan", "--node", "examples/node.json", "--device-config", path]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "") and err.count("\n") == 1
        assert f"{path}: invalid YAML at line 3, column 1: " in err
