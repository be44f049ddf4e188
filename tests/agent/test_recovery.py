"""Recovery on the simulator: journalled creates are finished, GPU instances without compute instance are
completed or destroyed as the planner would use them, and nothing in use or recorded is ever touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest
from kubernetes import client

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.inventory import GeometryCache, Inventory, read_inventory
from hami_mig.agent.journal import Journal
from hami_mig.agent.records import HeldInstance
from hami_mig.agent.recovery import RETRY_SOON_S, Recovery
from hami_mig.agent.snapshot import Holder
from hami_mig.metrics.stats import AgentStats
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.plan import Operation
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim


class Node:
    """One simulated A100-SXM4-80GB, its journal, and a Recovery wired as the agent wires it."""

    def __init__(self, tmp: Path, **config: Any) -> None:
        self.sim = NvmlSim("A100-SXM4-80GB:1")
        self.backend = NvmlBackend(self.sim)
        self.backend.init()
        self.config = AgentConfig(node_name="n", state_dir=str(tmp), **config)
        self.journal = Journal(tmp)
        self.stats = AgentStats()
        self.recovery = Recovery(self.backend, self.journal, GeometryCache(self.config, default_catalogue()),
                                 self.config, self.stats)
        self.held: dict[str, tuple[Holder, HeldInstance]] = {}
        self.gpu = self.backend.devices()[0].uuid

    def hold(self, uuid: str, profile: str, start: int, pod: str = "p") -> None:
        self.held[uuid] = (Holder("default", pod, 0), HeldInstance(self.gpu, uuid, profile, start, 0))

    def inventory(self) -> Inventory:
        return read_inventory(self.backend.devices(), self.held, self.config)

    def run(self, pods: list[Any] | None = None) -> bool:
        return self.recovery.run(self.inventory(), pods or [], self.inventory)

    def layout(self) -> dict[tuple[str, int], bool]:
        """(profile, start) -> whether it has its compute instance."""
        return {(hw.profile, hw.start): bool(hw.compute) for hw in self.backend.devices()[0].instances}

    def repairs(self) -> dict[str, float]:
        return {s.labels["kind"]: s.value for m in self.stats.collect() if m.name == "hami_mig_reconcile_repairs"
                for s in m.samples}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.backend.shutdown()


def create(node: Node, profile: str, start: int) -> Operation:
    return Operation("create", 0, profile, start, node.gpu)


def test_a_journalled_unrecorded_instance_is_destroyed_and_the_entry_dropped(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 4)
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    assert node.run()
    assert node.layout() == {} and node.journal.pending() == []
    assert node.repairs()["orphan_destroyed"] == 1


def test_a_journalled_instance_a_pod_records_is_kept_and_the_entry_dropped(node: Node) -> None:
    uuid = node.sim.add_instance(0, "3g.40gb", 4)
    node.hold(uuid, "3g.40gb", 4)
    node.journal.begin("default/p", [create(node, "3g.40gb", 4)])
    assert not node.run()
    assert node.layout() == {("3g.40gb", 4): True} and node.journal.pending() == []


def test_a_journalled_instance_with_processes_waits_in_the_journal(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 4, pids=[77])
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    node.run()
    assert node.layout() == {("3g.40gb", 4): True}
    assert len(node.journal.pending()) == 1
    # an early pass, then later ones: a busy instance changes at the next NVML resync, not every 5 s
    assert [node.recovery.next_wait(30.0) for _ in range(4)] == [RETRY_SOON_S, 10.0, 20.0, 30.0]
    node.run()
    assert node.recovery.next_wait(30.0) == 30.0  # still waiting: no faster than the interval


def test_a_lost_gpu_keeps_the_entry_until_it_answers_again(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 4)
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    node.sim.lose_gpu(0)
    node.run()
    assert len(node.journal.pending()) == 1
    node.sim.lose_gpu(0, False)
    node.run()
    assert node.layout() == {} and node.journal.pending() == []


def test_a_few_nvml_failures_are_retried_within_the_pass(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 4)
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    for kind in ("destroy_ci", "destroy_gi", "destroy_gi"):
        node.sim.fail(kind, 1, pynvml.NVML_ERROR_UNKNOWN)
    node.run()
    assert node.sim.pending_failures() == 0
    assert node.layout() == {} and node.journal.pending() == []
    assert node.recovery.next_wait(30.0) == 30.0


def test_persistent_failures_keep_the_entry_and_ask_for_an_early_pass(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 4, compute=False)
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    for _ in range(30):
        node.sim.fail("destroy_gi", 1, pynvml.NVML_ERROR_UNKNOWN)
        node.sim.fail("create_ci", 1, pynvml.NVML_ERROR_UNKNOWN)
    node.run()
    assert len(node.journal.pending()) == 1 and node.recovery.next_wait(30.0) == RETRY_SOON_S
    node.sim.clear_failures()
    node.run()
    assert node.layout() == {} and node.journal.pending() == []
    assert node.recovery.next_wait(30.0) == 30.0
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])  # new work later: early passes again
    node.sim.add_instance(0, "3g.40gb", 4, pids=[77])
    node.run()
    assert node.recovery.next_wait(30.0) == RETRY_SOON_S


def test_a_gi_without_ci_the_planner_would_reuse_is_completed(node: Node) -> None:
    """HAMi's geometries: beside a busy 3g.40gb@0 the other 3g.40gb slot is what a 40 GB pod gets."""
    node.sim.add_instance(0, "3g.40gb", 0, pids=[5])
    node.sim.add_instance(0, "3g.40gb", 4, compute=False)
    assert node.run()
    assert node.layout() == {("3g.40gb", 0): True, ("3g.40gb", 4): True}
    assert node.repairs()["gi_completed"] == 1


def test_a_gi_without_ci_the_planner_would_not_reuse_is_destroyed(node: Node) -> None:
    """No configured geometry holds a 1g.10gb beside the busy 3g.40gb@0: the GI only blocks slices."""
    node.sim.add_instance(0, "3g.40gb", 0, pids=[5])
    node.sim.add_instance(0, "1g.10gb", 4, compute=False)
    assert node.run()
    assert node.layout() == {("3g.40gb", 0): True}
    assert node.repairs()["gi_destroyed"] == 1


def test_a_journalled_gi_without_ci_is_destroyed_even_where_it_would_be_reused(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 0, pids=[5])
    node.sim.add_instance(0, "3g.40gb", 4, compute=False)
    node.journal.begin("default/gone", [create(node, "3g.40gb", 4)])
    node.run()
    assert node.layout() == {("3g.40gb", 0): True} and node.journal.pending() == []


def test_a_gi_at_a_recorded_placement_is_left_alone(node: Node) -> None:
    node.sim.add_instance(0, "1g.10gb", 4, compute=False)
    node.hold("MIG-lost", "1g.10gb", 4)  # its pod's instance lost its CI: the pod must be restarted
    assert not node.run()
    assert node.layout() == {("1g.10gb", 4): False}


def test_an_unreadable_record_allows_completing_but_never_destroying(node: Node) -> None:
    node.sim.add_instance(0, "3g.40gb", 0, pids=[5])
    node.sim.add_instance(0, "1g.10gb", 4, compute=False)
    node.sim.add_instance(0, "1g.10gb", 5)
    node.journal.begin("default/gone", [create(node, "1g.10gb", 5)])
    pod = client.V1Pod(metadata=client.V1ObjectMeta(namespace="default", name="odd", annotations={
        "hami-mig.io/instances": "{garbage"}), status=client.V1PodStatus(phase="Running"))
    node.run([pod])
    assert node.layout() == {("3g.40gb", 0): True, ("1g.10gb", 4): True, ("1g.10gb", 5): True}
    assert len(node.journal.pending()) == 1


def test_a_gpu_hami_mig_does_not_manage_is_never_touched(tmp_path: Path) -> None:
    n = Node(tmp_path, filter_indices=(0,))
    try:
        n.sim.add_instance(0, "1g.10gb", 4, compute=False)
        n.journal.begin("default/gone", [create(n, "1g.10gb", 4)])
        n.run()
        assert n.layout() == {("1g.10gb", 4): False}, "a GPU hami-mig does not manage was changed"
        assert n.journal.pending() == [], "an entry for a GPU left alone is not kept forever"
    finally:
        n.backend.shutdown()
