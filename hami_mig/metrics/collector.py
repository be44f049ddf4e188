"""Collectors computing every gauge from the agent's latest NodeSnapshot at scrape time (nothing stale to
reset); the snapshot's series are rendered once per snapshot, the counters on every scrape."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hami_mig import __version__
from hami_mig.agent.snapshot import NodeSnapshot
from hami_mig.metrics.hami import hami_families
from hami_mig.metrics.own import own_families

log = logging.getLogger(__name__)

SnapshotFn = Callable[[], NodeSnapshot]
Encoder = Callable[[CollectorRegistry], bytes]
_EMPTY = NodeSnapshot(node="")
_OM_EOF = b"# EOF\n"


class SnapshotCollector:
    """Every snapshot-derived series; `legacy` / `v29` switch HAMi's camelCase and v2.9 names."""

    def __init__(self, snapshot_fn: SnapshotFn, legacy: bool = True, v29: bool = True) -> None:
        self._snapshot_fn = snapshot_fn
        self.legacy = legacy
        self.v29 = v29
        self._cache_lock = threading.Lock()
        self._newest: NodeSnapshot | None = None  # the newest snapshot a scrape or warm-up was asked for
        self._last: dict[Hashable, tuple[NodeSnapshot, bytes]] = {}  # per format, its newest rendering
        self._rendering: dict[Hashable, NodeSnapshot] = {}  # per format, the snapshot being rendered now
        self._formats: dict[Hashable, Encoder] = {}  # the formats scrapes asked for

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

    def render(self, encoder: Encoder) -> bytes:
        """This collector's series in the encoder's format, rendered once per snapshot: the snapshot changes
        after an Allocate or a reconcile pass, scrapes come far more often (and during Allocate bursts).
        While another thread renders the newest snapshot (the agent's refresh thread, right after publishing
        it), a scrape is served the previous rendering instead of waiting for it."""
        try:
            snap = self._snapshot_fn()
        except Exception:
            log.exception("metrics: taking the node snapshot failed; serving no snapshot series")
            return encoder(_registry_of(_Fixed([_snapshot_up(False)])))
        key = _encoder_key(encoder)
        with self._cache_lock:
            self._formats.setdefault(key, encoder)
            self._newest = snap
            last = self._last.get(key)
            if last is not None and (last[0] is snap or self._rendering.get(key) is snap):
                return last[1]  # this snapshot's rendering, or the previous one while this one is rendered
            self._rendering[key] = snap
        try:
            found = encoder(_registry_of(_Fixed(list(self._families(snap)))))
        finally:
            with self._cache_lock:
                if self._rendering.get(key) is snap:
                    del self._rendering[key]
        with self._cache_lock:
            if self._newest is snap:  # a rendering of an older snapshot never replaces a newer one's
                self._last[key] = (snap, found)
        return found

    def _families(self, snap: NodeSnapshot) -> Iterator[Metric]:
        yield _snapshot_up(True)
        yield from hami_families(snap, self.legacy, self.v29)
        yield from own_families(snap)

    def warm(self) -> None:
        """Render the current snapshot in the formats scrapes use, before the next scrape asks (the agent
        calls this from its refresh thread once a new snapshot is published)."""
        with self._cache_lock:
            formats = list(self._formats.values())
        for encoder in formats:
            self.render(encoder)


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


def _encoder_key(encoder: Encoder) -> Hashable:
    """The same format asked twice is the same key (prometheus_client makes a new partial per request)."""
    if isinstance(encoder, functools.partial):
        return (encoder.func, encoder.args, tuple(sorted(encoder.keywords.items())))
    return encoder


class Recent:
    """A collector's metrics reused for `ttl_s` seconds: the process collector reads half a dozen /proc files,
    each a wait for the GIL while an Allocate runs; CPU seconds and memory a second old are as useful."""

    def __init__(self, collector: Collector, ttl_s: float = 1.0) -> None:
        self._collector = collector
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._until = 0.0
        self._metrics: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        with self._lock:
            if now < self._until:
                return self._metrics
        metrics = list(self._collector.collect())
        with self._lock:
            self._metrics, self._until = metrics, now + self._ttl_s
        return metrics


class _Fixed:
    """Metrics already computed, as a collector."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class AgentRegistry(CollectorRegistry):
    """Everything /metrics serves. `exposition` renders the counters (`others`: registered there too) on each
    scrape and reuses the snapshot's series as rendered for the current snapshot."""

    def __init__(self, snapshot: SnapshotCollector) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.others = CollectorRegistry(auto_describe=False)

    def add(self, collector: Collector) -> None:
        """Register a collector other than the snapshot's, for both renderings."""
        self.register(collector)
        self.others.register(collector)

    def exposition(self, encoder: Encoder) -> bytes:
        rest = encoder(self.others)
        if rest.endswith(_OM_EOF):  # OpenMetrics: one EOF marker, at the very end
            rest = rest[: -len(_OM_EOF)]
        return rest + self.snapshot.render(encoder)
