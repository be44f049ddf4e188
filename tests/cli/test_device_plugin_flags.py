"""`hami-mig device-plugin` flags for the operability features reach AgentConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.cli import build_parser
from hami_mig.cli.common import EXIT_BAD_INPUT, CliError
from hami_mig.cli.device_plugin import build_config
from hami_mig.kube.nodeconfig import GpuMode


def config_for(*argv: str) -> AgentConfig:
    return build_config(build_parser().parse_args(["device-plugin", "--node-name", "n", *argv]))


def test_defaults() -> None:
    c = config_for()
    assert (c.cdi, c.cdi_dir, c.cdi_base_spec, c.mig_minors_path, c.proc_root) == (
        False, "/var/run/cdi", "", "/proc/driver/nvidia-caps/mig-minors", "/proc")
    assert not c.manage_mig_mode and not c.ignore_gpu_operator and c.gpu_modes == ()


def test_flags_and_per_gpu_modes(tmp_path: Path) -> None:
    node_config = tmp_path / "config.json"
    node_config.write_text(json.dumps({"nodeconfig": [
        {"name": "n", "operatingmode": "mig", "gpus": [{"index": 1, "operatingmode": "hami-core"}]},
        {"name": "other", "operatingmode": "mig", "gpus": [{"index": 0, "operatingmode": "hami-core"}]},
    ]}))
    c = config_for("--cdi", "--cdi-dir", "/host/cdi", "--cdi-base-spec", "/etc/cdi/nvidia.yaml",
                   "--mig-minors", "/host/proc/driver/nvidia-caps/mig-minors",
                   "--proc-root", "/host/proc", "--manage-mig-mode", "--ignore-gpu-operator",
                   "--node-config", str(node_config))
    assert c.cdi and c.cdi_dir == "/host/cdi" and c.proc_root == "/host/proc"
    assert c.cdi_base_spec == "/etc/cdi/nvidia.yaml"
    assert c.mig_minors_path == "/host/proc/driver/nvidia-caps/mig-minors"
    assert c.manage_mig_mode and c.ignore_gpu_operator
    assert c.gpu_modes == (GpuMode("hami-core", index=1),)
    assert c.mode_of("GPU-x", 1) == ("hami-core", True)


def test_nvml_resync_interval() -> None:
    assert config_for().nvml_resync_interval_s == 30.0
    assert config_for("--nvml-resync-interval", "0").nvml_resync_interval_s == 0.0
    assert config_for("--nvml-resync-interval", "7.5").nvml_resync_interval_s == 7.5
    for bad in ("-1", "nan"):
        with pytest.raises(CliError) as info:
            config_for("--nvml-resync-interval", bad)
        assert info.value.exit_code == EXIT_BAD_INPUT
        assert str(info.value).startswith("--nvml-resync-interval: ")
