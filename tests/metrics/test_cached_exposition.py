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


def test_the_snapshot_series_are_rendered_once_per_snapshot(monkeypatch: pytest.MonkeyPatch,
                                                            stats: AgentStats) -> None:
    rendered: list[int] = []
    families = SnapshotCollector._families

    def counting(self: SnapshotCollector, snap: object) -> object:
        rendered.append(1)
        return families(self, snap)  # type: ignore[arg-type]

    monkeypatch.setattr(SnapshotCollector, "_families", counting)
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
