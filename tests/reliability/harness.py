"""The agent as a real subprocess on the simulator (shared --sim-state), between an in-process fake
API server and fake kubelet, so tests can SIGKILL it at any step and start it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest
from hami_mig.testing.fake_kubelet import FakeKubelet
from hami_mig.testing.nvmlsim import CRASH_ENV, NvmlSim

RESOURCE = "nvidia.com/gpu"
ARGS = ("--policy", "best-fit", "--geometries", "any")  # the crash tests' planner: any layout, best fit


class ProcessNode:
    """One node: fake API server + fake kubelet in this process, the agent in a child process."""

    def __init__(self, workdir: Path, sim_gpus: str = "A100-SXM4-80GB:1", node: str = "crash-node",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.dir = workdir
        self.node = node
        self.sim_gpus = sim_gpus
        self.state = str(workdir / "sim.json")
        self.kubelet_dir = workdir / "dp"
        self.kubelet_dir.mkdir()
        self.state_dir = workdir / "state"
        self.api = FakeApiServer().start()
        self.api.add_node(node)
        self.kubeconfig = self.api.write_kubeconfig(workdir / "kubeconfig")
        self.kubelet = FakeKubelet(self.kubelet_dir)
        self.kubelet.start()
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "agent.log"
        self.sim = NvmlSim(sim_gpus, state_file=self.state)  # the test's own view of the same GPUs
        self.backend = NvmlBackend(self.sim)
        self.backend.init()

    def start_agent(self, crash_before: str | None = None, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)
        if crash_before:
            env[CRASH_ENV] = crash_before
        generation = len(self.kubelet.registrations)
        cmd = [sys.executable, "-m", "hami_mig", "--log-level", "info", "device-plugin", "--node-name", self.node,
               "--kubeconfig", self.kubeconfig, "--kubelet-dir", str(self.kubelet_dir), "--backend", "sim",
               "--sim-gpus", self.sim_gpus, "--sim-state", self.state, "--metrics-port", "0",
               "--reconcile-interval", "3600", "--no-events", *self.extra_args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.kubelet.registrations) > generation and self.kubelet.devices(RESOURCE) and all(
                    d.healthy for d in self.kubelet.devices(RESOURCE)):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"agent did not register within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill_agent(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop_agent(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def close(self) -> None:
        self.kill_agent()
        self.kubelet.stop()
        self.api.stop()
        self.backend.shutdown()

    # -- cluster side ----------------------------------------------------------------------------
    def submit(self, name: str, mib: int) -> None:
        self.api.add_pod(pod_manifest(name, node=self.node, limits={"nvidia.com/gpumem": str(mib)}))

    def admit(self, name: str, timeout: float = 30.0) -> tuple[bool, str]:
        ids = [d.id for d in self.kubelet.devices(RESOURCE) if d.healthy][:1]
        try:
            response = self.kubelet.allocate(RESOURCE, ids, timeout=timeout)
        except Exception as exc:  # grpc.RpcError, or the agent died mid-call
            self.api.set_pod_phase("default", name, "Failed")
            details = getattr(exc, "details", None)
            return False, str(details() if callable(details) else exc)
        self.api.set_pod_phase("default", name, "Running")
        return True, dict(response.container_responses[0].envs)["NVIDIA_VISIBLE_DEVICES"]

    def finish(self, name: str) -> None:
        self.api.set_pod_phase("default", name, "Succeeded")

    def instances(self) -> dict[str, tuple[str, int]]:
        """MIG UUID -> (profile, start), read from the shared simulator state."""
        return {hw.mig_uuid: (hw.profile, hw.start) for d in self.backend.devices() for hw in d.instances
                if hw.mig_uuid}

    def gis_without_ci(self) -> list[tuple[int, str, int]]:
        """(GPU index, profile, start) of every GPU instance that has no compute instance (no MIG device)."""
        return [(d.index, hw.profile, hw.start) for d in self.backend.devices() for hw in d.instances
                if not hw.compute]

    def records(self) -> dict[str, str]:
        """MIG UUID -> pod name for every pod that is not finished."""
        out: dict[str, str] = {}
        for pod in self.api.pods(self.node):
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            raw = pod["metadata"].get("annotations", {}).get(INSTANCES_ANNOTATION)
            if raw:
                for held in json.loads(raw).values():
                    out.update({h["mig"]: pod["metadata"]["name"] for h in held})
        return out

    def pod(self, name: str) -> dict[str, Any]:
        return self.api.get_pod("default", name)


def prepare(node: ProcessNode) -> tuple[str, dict[str, tuple[str, int]]]:
    """A 3g.40gb in use, three free 1g.10gb after their pods finished: a 30 GB pod must reshape.
    Returns the running pod's MIG UUID and every instance (MIG UUID -> profile, start)."""
    node.start_agent()
    node.submit("keep", 30000)
    ok, keep = node.admit("keep")
    assert ok, keep
    for i in range(3):
        node.submit(f"s{i}", 8000)
        assert node.admit(f"s{i}")[0]
    for i in range(3):
        node.finish(f"s{i}")
    before = node.instances()
    assert len(before) == 4
    return keep, before
