"""What a newcomer types wrong gets one line naming the flag (exit 2); a port in use is the environment (exit 1)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from hami_mig.cli import build_parser, main
from hami_mig.cli.device_plugin import build_config, warn_unknown_keys
from hami_mig.testing.cluster import SimCluster
from tests.agent.conftest import wait_event


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_unknown_option_before_the_subcommand_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--bogus")
    assert code == 2 and "unknown option --bogus" in err and "before the subcommand" in err


def test_a_global_option_after_the_subcommand_says_where_it_goes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--log-level", "info")
    assert code == 2 and out == ""
    assert "--log-level is a global option: put it before the subcommand" in err
    assert "hami-mig --log-level info demo" in err


def test_an_unknown_subcommand_option_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--node", "examples/node.json", "--memory", "9000", "--colour")
    assert code == 2 and "unknown option --colour" in err and "hami-mig plan --help" in err


@pytest.mark.parametrize(("flag", "value", "allowed"), [
    ("--memory", "-5", "MiB >= 1"), ("--memory-percentage", "0", "1 to 100"), ("--count", "0", ">= 1"),
    ("--cores", "101", "0 to 100"),
])
def test_request_flags_are_named_as_typed(capsys: pytest.CaptureFixture[str], flag: str, value: str,
                                          allowed: str) -> None:
    code, _, err = run(capsys, "plan", "--node", "examples/node.json", flag, value)
    assert code == 2 and err.startswith(f"hami-mig plan: {flag} {value}: ") and allowed in err
    assert "nvidia.com/" not in err


@pytest.mark.parametrize("argv", [
    ["device-plugin", "--metrics-port", "99999"], ["scheduler", "--port", "70000"],
    ["demo", "--metrics-port", "-1"], ["demo", "--metrics-port", "http"],
])
def test_ports_are_checked_before_any_work(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and "is not a port number (0 to 65535)" in err


def test_a_port_in_use_is_the_environment_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out, err = run(capsys, "demo", "--serve", "--metrics-port", port)
        assert (code, out) == (1, "") and f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in err


def test_help_says_what_each_agent_flag_does_and_its_default() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    agent = sub["device-plugin"].format_help()
    for text in ("default: /var/lib/kubelet/device-plugins", "default: 0.0.0.0", "re-reads the node's pods",
                 "longest one kubelet Allocate may take"):
        assert text in " ".join(agent.split()), text
    demo = " ".join(sub["demo"].format_help().split())
    assert "port of /metrics, /healthz and /readyz with --serve" in demo
    assert "--policy hami --geometries config" in demo


def test_the_agent_warns_once_about_unknown_device_config_keys(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    config_file = tmp_path / "device-config.yaml"
    config_file.write_text("nvidia:\n  knownMigGeometrys: []\n  resourcePriorityName: nvidia.com/priority\n")
    with caplog.at_level(logging.WARNING, logger="hami_mig"):
        config = build_config(build_parser().parse_args(
            ["device-plugin", "--node-name", "demo-node", "--device-config", str(config_file),
             "--state-dir", str(tmp_path / "state")]))
    warnings = [r.getMessage() for r in caplog.records if "unknown key" in r.getMessage()]
    assert warnings == [f"device-config {config_file}: nvidia.knownMigGeometrys: unknown key 'knownMigGeometrys' "
                        "(did you mean 'knownMigGeometries'?); HAMi ignores it"]
    assert config.device_config.rules  # it goes on, as HAMi does: the built-in table
    with SimCluster(config) as cluster:
        assert cluster.agent is not None
        warn_unknown_keys(cluster.agent, config)
        event = wait_event(cluster, "DeviceConfigUnknownKeys")
    assert event["type"] == "Warning" and "'knownMigGeometries'" in event["message"]
    assert event["involvedObject"]["kind"] == "Node"
