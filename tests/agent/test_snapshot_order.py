"""A snapshot refresh runs without the agent lock; one that began reading before a reconcile pass and ends after
it must not replace the pass's newer picture (nor the device list sent to the kubelet)."""

from __future__ import annotations

import threading
from typing import Any

from hami_mig.agent.config import AgentConfig
from hami_mig.testing.cluster import SimCluster


def test_a_refresh_overtaken_by_a_reconcile_pass_is_dropped() -> None:
    cluster = SimCluster(AgentConfig(node_name="node-a", reconcile_interval_s=3600, events=False))
    cluster.start()
    try:
        agent = cluster.agent
        assert agent is not None
        reading, release = threading.Event(), threading.Event()
        inventory = agent._inventory

        def slow_in_the_refresh(pods: list[Any]) -> Any:
            inv = inventory(pods)
            if threading.current_thread().name == "slow-refresh":
                reading.set()
                assert release.wait(10)
            return inv

        agent._inventory = slow_in_the_refresh  # type: ignore[method-assign]
        refresh = threading.Thread(target=agent._refresh, name="slow-refresh")
        refresh.start()
        assert reading.wait(10)  # the refresh has read the GPUs and pods ...
        agent.reconcile(resync=False)  # ... a reconcile pass publishes a newer picture meanwhile ...
        newer = agent.current_snapshot()
        release.set()  # ... then the refresh finishes
        refresh.join(10)
        assert agent.current_snapshot() is newer
    finally:
        cluster.stop()
