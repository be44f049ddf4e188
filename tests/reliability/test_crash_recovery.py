"""Interrupted work is always finished: a failed recovery is retried after later Allocates and restarts, and no
GPU instance is left without its compute instance after reconcile, whichever CI/GI step a crash cut in two.

The agent is a real subprocess on a shared simulator state; faults are NVML errors injected into the calls
recovery makes, and crashes are SIGKILLs just before a given NVML call (`HAMI_MIG_SIM_CRASH_BEFORE`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from .harness import ARGS, ProcessNode, prepare

Place = tuple[str, int]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ProcessNode]:
    n = ProcessNode(tmp_path, extra_args=(*ARGS, "--state-dir", str(tmp_path / "state")))
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def hami_node(tmp_path: Path) -> Iterator[ProcessNode]:
    """HAMi's policy and geometries: a 1g.10gb goes beside a free 3g.40gb, not over it."""
    n = ProcessNode(tmp_path, extra_args=("--state-dir", str(tmp_path / "state")))
    try:
        yield n
    finally:
        n.close()


def start_maybe_crashing(node: ProcessNode, crash_before: str) -> bool:
    """Start the agent armed to die before an NVML call; True when it died (in its start-up reconcile)."""
    try:
        node.start_agent(crash_before=crash_before)
    except RuntimeError:
        node.kill_agent()
        return True
    node.kill_agent()
    return False


def journal_entries(node: ProcessNode) -> list[dict[str, object]]:
    path = node.state_dir / "allocate-journal.json"
    return json.loads(path.read_text())["entries"] if path.exists() else []


def leaks(node: ProcessNode, free_before: set[Place]) -> dict[str, Place]:
    """Instances no live pod records, at a placement that was not free capacity before."""
    now, records = node.instances(), node.records()
    return {u: p for u, p in now.items() if u not in records and p not in free_before}


def test_a_failed_recovery_survives_an_allocate_and_the_next_restart(hami_node: ProcessNode) -> None:
    """The defect: recovery's destroy failed, the next Allocate overwrote the journal, the GI leaked for good."""
    node = hami_node
    node.start_agent(crash_before="create_ci:1")
    node.submit("big", 30000)
    ok, _ = node.admit("big", timeout=15)
    assert not ok
    node.kill_agent()
    half = node.gis_without_ci()
    assert len(half) == 1, "the crash should leave the new GPU instance without its compute instance"
    for _ in range(12):  # every destroy and completion recovery tries at this start fails
        node.sim.fail("destroy_gi", 1, pynvml.NVML_ERROR_UNKNOWN)
        node.sim.fail("create_ci", 1, pynvml.NVML_ERROR_UNKNOWN)
    node.start_agent()
    assert node.sim.pending_failures() < 24, "recovery never reached the injected faults"
    assert node.gis_without_ci() == half
    node.sim.clear_failures()

    node.submit("small", 8000)  # an Allocate runs before the next restart
    ok, detail = node.admit("small")
    assert ok, detail
    assert node.gis_without_ci() == half, "the Allocate reshaped over the broken instance: nothing left to test"
    assert [e["pod"] for e in journal_entries(node)] == ["default/big"], "the unfinished entry was forgotten"

    node.kill_agent()
    node.start_agent()
    assert node.gis_without_ci() == []
    assert leaks(node, set()) == {}
    assert journal_entries(node) == []


def test_one_fault_in_recovery_is_retried_in_the_same_pass(node: ProcessNode) -> None:
    node.start_agent(crash_before="create_ci:1")
    node.submit("big", 30000)
    assert not node.admit("big", timeout=15)[0]
    node.kill_agent()
    node.sim.fail("destroy_gi", 1, pynvml.NVML_ERROR_GPU_IS_LOST)
    node.start_agent()
    assert node.sim.pending_failures() == 0
    assert node.gis_without_ci() == [] and leaks(node, set()) == {} and journal_entries(node) == []


# Every crash point between a CI and a GI operation of the reshape prepare() forces (destroy three free
# 1g.10gb: CI, then GI; then create the 3g.40gb: GI, then CI), alone or followed by a second crash inside the
# recovery of the restart: before the CI create that completes a free 1g.10gb GPU instance (the planner,
# best-fit over any layout, would give it to a 10 GB pod), or before the GI destroy that removes the
# journalled 3g.40gb one.
CUTS = [
    ("create_ci:1", None),
    ("destroy_gi:1", None),
    ("destroy_gi:2", None),
    ("destroy_gi:3", None),
    ("destroy_gi:1", "create_ci:1"),
    ("destroy_gi:3", "create_ci:1"),
    ("create_ci:1", "destroy_gi:1"),
]


@pytest.mark.parametrize(("cut", "in_recovery"), CUTS)
def test_no_gpu_instance_without_compute_instance_after_reconcile(node: ProcessNode, cut: str,
                                                                  in_recovery: str | None) -> None:
    keep, before = prepare(node)
    node.kill_agent()
    node.start_agent(crash_before=cut)
    node.submit("big", 30000)
    ok, _ = node.admit("big", timeout=15)
    assert not ok
    node.kill_agent()
    assert node.gis_without_ci(), f"crashing before {cut} should leave a GPU instance without compute instance"
    if in_recovery is not None:
        assert start_maybe_crashing(node, in_recovery), f"recovery should have been killed before {in_recovery}"
        assert node.gis_without_ci(), "the crash inside recovery should leave the GPU instance without CI"
    node.start_agent()
    assert node.gis_without_ci() == [], f"left after reconcile: {node.gis_without_ci()}"
    assert node.instances().get(keep) == before[keep], "the running pod's instance moved or vanished"
    assert leaks(node, {p for u, p in before.items() if u != keep}) == {}
    assert journal_entries(node) == []


def test_a_crash_inside_recovery_between_ci_and_gi_destroy(node: ProcessNode) -> None:
    """An orphan with its CI (record write and undo both failed), then recovery killed between its CI and GI
    destroy: the next start destroys the GI."""
    node.start_agent()
    node.api.fail_next(1, 503, method="PATCH", path="/api/v1/namespaces/default/pods/big")
    for _ in range(3):  # the undo's GI destroy fails (each failure puts the CI back)
        node.sim.fail("destroy_gi", 1, pynvml.NVML_ERROR_UNKNOWN)
    node.submit("big", 30000)
    assert not node.admit("big")[0]
    node.sim.clear_failures()
    node.kill_agent()
    orphan = set(node.instances()) - set(node.records())
    assert len(orphan) == 1 and len(journal_entries(node)) == 1
    assert start_maybe_crashing(node, "destroy_gi:1"), "recovery should have been killed before its GI destroy"
    assert node.gis_without_ci(), "recovery should have died with the CI destroyed and the GI not"
    node.start_agent()
    assert node.gis_without_ci() == [] and node.instances() == {} and journal_entries(node) == []
