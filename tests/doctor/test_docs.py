"""The doctor's docs match the doctor: the sample in install.md is what it prints, every finding has a fix row."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from tests.doctor.conftest import Run

ROOT = Path(__file__).resolve().parents[2]


def test_the_install_guide_sample_is_what_the_doctor_prints(doctor: Callable[..., Run]) -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    block = re.search(r"```console\n\$ (hami-mig doctor --backend sim[^\n]*)\n(.*?)```", text, re.S)
    assert block is not None, "install.md lost its doctor sample"
    argv = shlex.split(block.group(1))[2:]
    run = doctor(*argv)
    assert run.out == block.group(2)
    assert run.code == 1


def test_every_check_the_doctor_emits_has_a_row_in_operation_md() -> None:
    source = "".join(p.read_text() for p in (ROOT / "hami_mig" / "doctor").glob("*.py"))
    emitted = set(re.findall(r'"((?:nvml|gpu|node|cluster|config)\.[a-z-]+)"', source)) - {"config.json"}  # a file
    assert {"nvml.load", "gpu.mig-mode", "cluster.mig-manager", "config.device", "config.node"} <= emitted
    table = (ROOT / "docs" / "operation.md").read_text().split("### `hami-mig doctor` findings", 1)[1]
    documented = set(re.findall(r"^\| `([a-z]+\.[a-z-]+)` \|", table, re.M))
    assert emitted - documented == set()
