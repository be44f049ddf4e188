"""Assemble the agent's registry: snapshot series, event counters, build info, process metrics."""

from __future__ import annotations

from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from hami_mig import __version__
from hami_mig.metrics.collector import BuildInfoCollector, SnapshotCollector, SnapshotFn
from hami_mig.metrics.stats import AgentStats


def build_registry(
    snapshot_fn: SnapshotFn,
    stats: AgentStats | None = None,
    *,
    legacy: bool = True,
    v29: bool = True,
    process: bool = True,
    version: str = __version__,
) -> CollectorRegistry:
    """A fresh registry (never the global default) holding everything /metrics serves."""
    registry = CollectorRegistry()
    registry.register(BuildInfoCollector(version))
    registry.register(SnapshotCollector(snapshot_fn, legacy=legacy, v29=v29))
    if stats is not None:
        registry.register(stats)
    if process:
        ProcessCollector(registry=registry)
    return registry
