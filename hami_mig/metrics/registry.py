"""Assemble the agent's registry: snapshot series, event counters, build info, process metrics."""

from __future__ import annotations

from prometheus_client.process_collector import ProcessCollector

from hami_mig import __version__
from hami_mig.metrics.collector import AgentRegistry, BuildInfoCollector, Recent, SnapshotCollector, SnapshotFn
from hami_mig.metrics.stats import AgentStats


def build_registry(
    snapshot_fn: SnapshotFn,
    stats: AgentStats | None = None,
    *,
    legacy: bool = True,
    v29: bool = True,
    process: bool = True,
    version: str = __version__,
) -> AgentRegistry:
    """A fresh registry (never the global default) holding everything /metrics serves."""
    snapshot = SnapshotCollector(snapshot_fn, legacy=legacy, v29=v29)
    registry = AgentRegistry(snapshot)
    registry.add(BuildInfoCollector(version))
    registry.register(snapshot)
    if stats is not None:
        registry.add(stats)
    if process:
        registry.add(Recent(ProcessCollector(registry=None)))  # read /proc at most once a second
    return registry
