"""A pod whose hami-mig.io/instances record cannot be read freezes every instance; it is reported once per
set of such pods, not at every reading of the node (Allocates, refreshes and reconcile passes read it)."""

from __future__ import annotations

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.metrics import AgentStats
from hami_mig.testing.cluster import SimCluster


def repairs(stats: AgentStats, kind: str) -> float:
    for family in stats.collect():
        if family.name == "hami_mig_reconcile_repairs":
            return sum(s.value for s in family.samples if s.labels.get("kind") == kind and s.name.endswith("_total"))
    return 0.0


def test_an_unreadable_record_is_reported_once_per_set_of_pods() -> None:
    stats = AgentStats()
    cluster = SimCluster(AgentConfig(node_name="node-a", reconcile_interval_s=3600, events=False), stats=stats)
    cluster.start()
    try:
        cluster.submit("keep", {"nvidia.com/gpumem": 8000})
        assert cluster.admit("keep").ok
        cluster.api.patch_pod("default", "keep", {"metadata": {"annotations": {INSTANCES_ANNOTATION: "{garbage"}}})
        for i in range(3):  # each Allocate (and the refresh after it) reads the node's pods
            cluster.submit(f"p{i}", {"nvidia.com/gpumem": 8000})
            cluster.admit(f"p{i}")
        assert cluster.agent is not None
        cluster.agent.reconcile()
        assert repairs(stats, "unreadable_record") == 1
        cluster.api.patch_pod("default", "p0", {"metadata": {"annotations": {INSTANCES_ANNOTATION: "[oops"}}})
        cluster.agent.reconcile()
        assert repairs(stats, "unreadable_record") == 2  # a new pod joined the set
    finally:
        cluster.stop()
