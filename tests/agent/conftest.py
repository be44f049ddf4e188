"""Shared pieces for the agent's operability tests: a fake /proc and a cluster factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.testing.cluster import SimCluster
from hami_mig.testing.nvmlsim.caps import write_fake_proc

NODE = "node-a"

MakeCluster = Callable[..., Any]


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    """A /proc with the driver's mig-minors table and /proc/devices (nvidia-caps major 511)."""
    return write_fake_proc(tmp_path / "proc")


@pytest.fixture
def make_cluster(tmp_path: Path, fake_proc: Path) -> Iterator[Callable[..., Any]]:
    """`with make_cluster(sim_gpus=..., node_labels=..., **config) as c:` — a SimCluster whose agent reads the fake
    /proc, writes CDI specs into tmp_path/cdi, and never waits long on reconciles or retries."""

    @contextmanager
    def make(*, sim_gpus: str = "A100-SXM4-80GB:2", node_labels: Mapping[str, str] | None = None,
             before_start: Callable[[SimCluster], None] | None = None, **overrides: Any) -> Iterator[SimCluster]:
        settings: dict[str, Any] = dict(
            node_name=NODE, reconcile_interval_s=3600, events=True, cdi_dir=str(tmp_path / "cdi"),
            mig_minors_path=str(fake_proc / "driver" / "nvidia-caps" / "mig-minors"), proc_root=str(fake_proc),
            in_use_backoff_s=(0.01, 0.02, 0.03),
        )
        settings.update(overrides)
        cluster = SimCluster(AgentConfig(**settings), sim_gpus=sim_gpus, node_labels=node_labels)
        if before_start is not None:
            before_start(cluster)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()

    yield make


def events(cluster: SimCluster, *, reason: str | None = None, about: str | None = None) -> list[dict[str, Any]]:
    """Events the agent posted (pods' and the Node's), optionally one reason / one involved object."""
    return [e for e in cluster.api.events(None, involved_name=about) if reason is None or e["reason"] == reason]


def wait_event(cluster: SimCluster, reason: str, about: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    assert cluster.wait(lambda: bool(events(cluster, reason=reason, about=about)), timeout), (
        f"no {reason} event; got {[(e['reason'], e['message']) for e in events(cluster)]}")
    return events(cluster, reason=reason, about=about)[-1]
