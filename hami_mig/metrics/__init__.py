"""Prometheus metrics for the node agent: HAMi-compatible and hami-mig series, and the HTTP endpoint."""

from hami_mig.metrics.collector import BuildInfoCollector, SnapshotCollector, SnapshotFn
from hami_mig.metrics.registry import build_registry
from hami_mig.metrics.server import DEFAULT_PORT, MetricsServer, ReadyFn, always_ready
from hami_mig.metrics.stats import (
    ALLOCATE_BUCKETS,
    ALLOCATE_OUTCOMES,
    RESHAPE_OPS,
    RESHAPE_RESULTS,
    AgentStats,
)

__all__ = [
    "ALLOCATE_BUCKETS",
    "ALLOCATE_OUTCOMES",
    "DEFAULT_PORT",
    "RESHAPE_OPS",
    "RESHAPE_RESULTS",
    "AgentStats",
    "BuildInfoCollector",
    "MetricsServer",
    "ReadyFn",
    "SnapshotCollector",
    "SnapshotFn",
    "always_ready",
    "build_registry",
]
