"""`hami-mig scheduler` as a process: serves against a kubeconfig, exits cleanly on SIGTERM, refuses bad flags."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3

from hami_mig.cli import build_parser, main
from hami_mig.kube.annotations import NODE_REGISTER
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest
from tests.scheduler.helpers import AGENT, post, register


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_scheduler_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with FakeApiServer() as api:
        api.add_node("gpu-1", annotations={NODE_REGISTER: register("gpu-1", 1), **AGENT})
        pod = api.add_pod(pod_manifest("p", limits={"nvidia.com/gpumem": "1000"}))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "hami_mig.cli", "--log-level", "info", "scheduler", "--port", str(port),
             "--host", "127.0.0.1", "--kubeconfig", kubeconfig, "--score", "spread", "--lock-timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            http = urllib3.PoolManager(retries=False)
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.request("GET", f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                        break
                except urllib3.exceptions.HTTPError:
                    pass
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the extender did not come up"
                time.sleep(0.1)
            status, out = post(f"http://127.0.0.1:{port}/filter", {"pod": pod, "nodenames": ["gpu-1"]})
            assert status == 200 and out["nodenames"] == ["gpu-1"]
            status, out = post(f"http://127.0.0.1:{port}/prioritize", {"pod": pod, "nodenames": ["gpu-1"]})
            assert out == [{"host": "gpu-1", "score": 10}]  # spread: an idle node scores highest
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=10)[0]
        assert proc.returncode == 0, output
        assert "serving on http://127.0.0.1:" in output


def test_flags_parse_and_bad_ones_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["scheduler", "--port", "8443", "--policy", "best-fit", "--geometries", "any",
                                      "--score", "spread", "--scheduler-name", "x", "--lock-timeout", "30"])
    assert (args.port, args.policy, args.geometries, args.score, args.scheduler_name, args.lock_timeout) == (
        8443, "best-fit", "any", "spread", "x", 30.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["scheduler", "--port", "1", "--lock-timeout", "-1"])
    assert main(["scheduler", "--port", "1", "--cert", "/x"]) == 2
    assert "--cert and --key go together" in capsys.readouterr().err
    assert main(["scheduler", "--port", "0", "--device-config", "/nonexistent.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().err
