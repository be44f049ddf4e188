"""A whole node on a laptop: fake API server + fake kubelet + NVML simulator around the REAL agent.

The demo and the end-to-end tests drive it like a cluster would: create a pod, let the "kubelet"
admit it (Allocate over real gRPC), finish it, restart things.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.core import Agent, Stats
from hami_mig.kube.client import KubeClient
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest
from hami_mig.testing.fake_kubelet import FakeKubelet
from hami_mig.testing.nvmlsim import NvmlSim


@dataclass
class Admission:
    """What the kubelet got back for one container, or the error it saw."""

    pod: str
    ok: bool
    devices: tuple[str, ...] = ()
    envs: dict[str, str] = field(default_factory=dict)
    error: str = ""
    cdi_devices: tuple[str, ...] = ()


class SimCluster:
    """One simulated node. Use as a context manager; `agent` is the real Agent object."""

    def __init__(self, config: AgentConfig, *, sim_gpus: str = "A100-SXM4-80GB:2", state_file: str | None = None,
                 seed: int = 0, stats: Stats | None = None, workdir: str | None = None,
                 node_labels: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.node_labels = {"nvidia.com/gpu.present": "true", **(node_labels or {})}
        self._tmp = tempfile.TemporaryDirectory(prefix="hm-", dir=workdir or "/tmp")
        self.dir = Path(self._tmp.name)
        self.kubelet_dir = self.dir / "dp"
        self.kubelet_dir.mkdir()
        self.api = FakeApiServer()
        self.kubelet = FakeKubelet(self.kubelet_dir)
        self.sim = NvmlSim(sim_gpus, seed=seed, state_file=state_file)
        self.backend = NvmlBackend(self.sim)
        self.stats = stats
        self.agent: Agent | None = None
        self._kube: KubeClient | None = None
        self._used: set[str] = set()
        self._by_pod: dict[tuple[str, str], list[str]] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> SimCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.api.start()
        self.api.add_node(self.config.node_name, labels=self.node_labels)
        self.kubelet.start()
        self.backend.init()
        self.start_agent()

    def start_agent(self) -> Agent:
        self._kube = KubeClient(self.api.api_client(), node_name=self.config.node_name)
        config = self.config if self.config.state_dir else replace(self.config, state_dir=str(self.dir / "state"))
        self.agent = Agent(config, self.backend, self._kube, kubelet_dir=str(self.kubelet_dir), stats=self.stats)
        self.agent.start()
        if not self.kubelet.wait_for_registration(self.config.names.count, timeout=10):
            raise RuntimeError("the agent did not register with the fake kubelet within 10s")
        expected = len(self.agent.source.devices())
        self.kubelet.wait_for_devices(
            self.config.names.count, lambda ds: len(ds) == expected and all(d.healthy for d in ds), timeout=10)
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop(grace=1.0)
            self.agent = None

    def stop(self) -> None:
        self.stop_agent()
        self.kubelet.stop()
        self.api.stop()
        self.backend.shutdown()
        self._tmp.cleanup()

    # -- the cluster's side ----------------------------------------------------------------------
    def submit(self, name: str, limits: Mapping[str, str | int], *, annotations: Mapping[str, str] | None = None,
               namespace: str = "default") -> dict[str, Any]:
        """Create a pod already bound to this node (what the default scheduler does)."""
        manifest = pod_manifest(name, namespace, node=self.config.node_name,
                                limits={k: str(v) for k, v in limits.items()}, annotations=annotations)
        return self.api.add_pod(manifest)

    def admit(self, name: str, namespace: str = "default", count: int | None = None) -> Admission:
        """What the kubelet does at admission: pick free device IDs and call Allocate over gRPC."""
        pod = self.api.get_pod(namespace, name)
        limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
        n = count if count is not None else int(limits.get(self.config.names.count, 1))
        try:
            ids = self.free_device_ids(n)
        except RuntimeError as exc:  # the kubelet itself refuses: not enough nvidia.com/gpu devices left
            self.api.set_pod_phase(namespace, name, "Failed")
            return Admission(name, False, error=str(exc))
        try:
            response = self.kubelet.allocate(self.config.names.count, ids)
        except Exception as exc:  # grpc.RpcError carries the agent's message
            details = getattr(exc, "details", None)
            # The kubelet fails a pod whose device Allocate fails (UnexpectedAdmissionError).
            self.api.set_pod_phase(namespace, name, "Failed")
            return Admission(name, False, error=str(details() if callable(details) else exc))
        envs = dict(response.container_responses[0].envs)
        cdi = tuple(d.name for d in response.container_responses[0].cdi_devices)
        self.api.set_pod_phase(namespace, name, "Running")
        devices = tuple(envs.get("HAMI_MIG_DEVICES", "").split(",")) if envs.get("HAMI_MIG_DEVICES") else ()
        self._used.update(ids)
        self._by_pod[(namespace, name)] = ids
        return Admission(name, True, devices, envs, cdi_devices=cdi)

    def finish(self, name: str, namespace: str = "default", *, delete: bool = False) -> None:
        """The pod's containers exit (or it is deleted): its devices go back to the kubelet's pool."""
        if delete:
            self.api.delete_pod(namespace, name, grace_period_s=0)
        else:
            self.api.set_pod_phase(namespace, name, "Succeeded")
        for device_id in self._by_pod.pop((namespace, name), ()):
            self._used.discard(device_id)

    def free_device_ids(self, n: int) -> list[str]:
        devices = [d.id for d in self.kubelet.devices(self.config.names.count) if d.healthy]
        free = [d for d in devices if d not in self._used]
        if len(free) < n:
            raise RuntimeError(f"the kubelet has only {len(free)} free nvidia.com/gpu devices, {n} asked")
        return free[:n]

    def reconcile(self) -> None:
        assert self.agent is not None
        self.agent.reconcile()

    def wait(self, condition: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False
