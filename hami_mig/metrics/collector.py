"""Collectors computing every gauge from a fresh NodeSnapshot at scrape time (nothing stale to reset)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric

from hami_mig import __version__
from hami_mig.agent.snapshot import NodeSnapshot
from hami_mig.metrics.hami import hami_families
from hami_mig.metrics.own import own_families

log = logging.getLogger(__name__)

SnapshotFn = Callable[[], NodeSnapshot]
_EMPTY = NodeSnapshot(node="")


class SnapshotCollector:
    """Every snapshot-derived series; `legacy` / `v29` switch HAMi's camelCase and v2.9 names."""

    def __init__(self, snapshot_fn: SnapshotFn, legacy: bool = True, v29: bool = True) -> None:
        self._snapshot_fn = snapshot_fn
        self.legacy = legacy
        self.v29 = v29

    def describe(self) -> Iterable[Metric]:
        """Names only (no snapshot taken) so the registry can reject duplicates at register time."""
        return list(self._families(_EMPTY))

    def collect(self) -> Iterable[Metric]:
        try:
            snap = self._snapshot_fn()
        except Exception:  # a broken snapshot must not take the counters and build info down with it
            log.exception("metrics: taking the node snapshot failed; serving no snapshot series")
            return [_snapshot_up(False)]
        return list(self._families(snap))

    def _families(self, snap: NodeSnapshot) -> Iterator[Metric]:
        yield _snapshot_up(True)
        yield from hami_families(snap, self.legacy, self.v29)
        yield from own_families(snap)


class BuildInfoCollector:
    """hami_mig_build_info{version} 1."""

    def __init__(self, version: str = __version__) -> None:
        self.version = version

    def collect(self) -> Iterable[Metric]:
        family = InfoMetricFamily("hami_mig_build", "hami-mig version (value 1).", labels=["version"])
        family.add_metric([self.version], {})
        return [family]

    describe = collect


def _snapshot_up(ok: bool) -> Metric:
    family = GaugeMetricFamily(
        "hami_mig_snapshot_up", "1 when this scrape got the agent's node snapshot; 0 when taking it failed "
        "(the snapshot series are then absent).")
    family.add_metric([], 1.0 if ok else 0.0)
    return family
