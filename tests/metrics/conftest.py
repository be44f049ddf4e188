from __future__ import annotations

from collections.abc import Iterator

import pytest

from hami_mig.metrics import AgentStats, MetricsServer, build_registry

from .expo import SnapshotBox
from .snapshots import mixed_node


@pytest.fixture
def box() -> SnapshotBox:
    return SnapshotBox(mixed_node())


@pytest.fixture
def stats() -> AgentStats:
    return AgentStats()


@pytest.fixture
def server(box: SnapshotBox, stats: AgentStats) -> Iterator[MetricsServer]:
    srv = MetricsServer(build_registry(box, stats), port=0, host="127.0.0.1")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
