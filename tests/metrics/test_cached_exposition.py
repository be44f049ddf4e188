"""A scrape renders the counters every time and the snapshot's series once per snapshot; what it serves is
exactly what the registry would render in one go."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from hami_mig.metrics import AgentStats, MetricsServer, build_registry
from hami_mig.metrics.collector import SnapshotCollector

from .expo import SnapshotBox, get
from .snapshots import busy_gpu, mixed_node, node


def test_served_text_equals_the_registry_rendered_in_one_go(box: SnapshotBox, stats: AgentStats) -> None:
    registry = build_registry(box, stats, process=False)
    stats.observe_allocate(0.02, "allocated")
    for encode, parse in ((generate_latest, text_string_to_metric_families), (generate_openmetrics, om_families)):
        served = registry.exposition(encode).decode()
        whole = encode(registry).decode()
        assert {f.name: f for f in parse(served)} == {f.name: f for f in parse(whole)}  # type: ignore[operator]
        assert served.count("# EOF") == whole.count("# EOF")


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per time the snapshot's series are computed."""
    seen: list[int] = []
    families = SnapshotCollector._families

    def counting(self: SnapshotCollector, snap: object) -> object:
        seen.append(1)
        return families(self, snap)  # type: ignore[arg-type]

    monkeypatch.setattr(SnapshotCollector, "_families", counting)
    return seen


def test_the_snapshot_series_are_rendered_once_per_snapshot(rendered: list[int], stats: AgentStats) -> None:
    box = SnapshotBox(mixed_node())
    registry = build_registry(box, stats)
    rendered.clear()  # registering describes the series once, from an empty snapshot
    with MetricsServer(registry, port=0, host="127.0.0.1") as srv:
        for _ in range(3):
            stats.observe_allocate(0.01, "reused")
            body = get(f"{srv.url}/metrics").body.decode()
            assert 'hami_mig_allocate_duration_seconds_count{outcome="reused"}' in body
        assert len(rendered) == 1
        om = {"Accept": "application/openmetrics-text; version=1.0.0"}
        assert get(f"{srv.url}/metrics", om).body.endswith(b"# EOF\n")
        assert get(f"{srv.url}/metrics", om).body.count(b"# EOF") == 1
        assert len(rendered) == 2  # once more for the second format, then reused
        box.set(node(busy_gpu(0)))
        assert b'deviceidx="3"' not in get(f"{srv.url}/metrics").body
        assert len(rendered) == 3


def test_warm_renders_a_new_snapshot_in_the_formats_scrapes_asked_for(rendered: list[int],
                                                                      stats: AgentStats) -> None:
    box = SnapshotBox(mixed_node())
    registry = build_registry(box, stats, process=False)
    registry.snapshot.warm()  # no scrape yet: no format to render
    rendered.clear()
    served = registry.exposition(generate_latest)
    box.set(node(busy_gpu(0)))
    registry.snapshot.warm()
    assert len(rendered) == 2  # the first scrape's, then the new snapshot in the text format
    assert registry.exposition(generate_latest) != served
    assert len(rendered) == 2  # the scrape found it rendered


def test_recent_reuses_a_collectors_metrics_for_its_ttl() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    from hami_mig.metrics.collector import Recent

    calls: list[int] = []

    class Counting:
        def collect(self) -> list[GaugeMetricFamily]:
            calls.append(1)
            return [GaugeMetricFamily("x", "x", value=len(calls))]

    recent, fresh = Recent(Counting(), ttl_s=3600), Recent(Counting(), ttl_s=0)
    assert list(recent.collect()) == list(recent.collect()) and len(calls) == 1
    list(fresh.collect())
    list(fresh.collect())
    assert len(calls) == 3


def test_a_scrape_during_the_render_of_a_new_snapshot_gets_the_previous_one_at_once(
        monkeypatch: pytest.MonkeyPatch, stats: AgentStats) -> None:
    import threading

    box = SnapshotBox(mixed_node())
    registry = build_registry(box, stats, process=False)
    before = registry.exposition(generate_latest)  # the first picture, rendered
    started, release = threading.Event(), threading.Event()
    families = SnapshotCollector._families

    def slow(self: SnapshotCollector, snap: object) -> object:
        started.set()
        assert release.wait(10)
        return families(self, snap)  # type: ignore[arg-type]

    monkeypatch.setattr(SnapshotCollector, "_families", slow)
    box.set(node(busy_gpu(0)))
    warming = threading.Thread(target=registry.snapshot.warm)  # the agent's refresh thread
    warming.start()
    assert started.wait(10)
    served = registry.exposition(generate_latest)  # does not wait for the render in progress
    release.set()
    warming.join(10)
    assert served == before  # the previous picture (no counter moved meanwhile)
    after = registry.exposition(generate_latest)
    assert after != served and b'deviceidx="3"' not in after  # the new picture, once rendered
