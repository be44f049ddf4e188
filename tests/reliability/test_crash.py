"""SIGKILL the agent right after each step of an Allocate that reshapes, restart it, check nothing is lost.

Each step is a mutating NVML call (destroy CI, destroy GI, create GI, create CI) or the API write
that records the allocation. After the restart: every instance a live pod holds is intact (same
placement, same MIG UUID); no orphan instance remains (only recorded ones, and free ones at placements
that held free instances before); no GPU instance is left without its compute instance; the pod either
got its instance or failed cleanly; a new pod is admitted.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ARGS, ProcessNode, prepare

TABLE: list[str] = []


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessNode]:
    workdir = Path(tmp_path_factory.mktemp("c", numbered=True))
    n = ProcessNode(workdir, extra_args=(*ARGS, "--state-dir", str(workdir / "state")))
    try:
        yield n
    finally:
        n.close()


def check_after_restart(node: ProcessNode, keep: str, before: dict[str, tuple[str, int]], ok: bool) -> str:
    node.start_agent()  # its first reconcile runs before it registers
    now = node.instances()
    records = node.records()
    assert now.get(keep) == before[keep], "the running pod's instance moved or vanished"
    for uuid in records:
        assert uuid in now, f"pod {records[uuid]} holds {uuid}, which no longer exists"
    # A free instance interrupted between its CI and GI destroy is completed again under a new MIG UUID:
    # what must not appear is an unrecorded instance at a placement that was not free capacity before.
    pre_free = {before[u] for u in before if u != keep}
    orphans = {u: now[u] for u in set(now) - set(records) if now[u] not in pre_free}
    assert not orphans, f"orphan instances after recovery: {orphans}"
    assert not node.gis_without_ci(), "a GPU instance without compute instance is left after reconcile"
    big = node.pod("big")
    phase = big.get("status", {}).get("phase")
    assert (phase == "Running") == ok
    if ok:
        node.finish("big")  # make room: the GPU is full with it
    node.submit("after", 8000)
    admitted, detail = node.admit("after")
    assert admitted, f"a new pod could not be admitted after recovery: {detail}"
    return f"{'allocated' if ok else 'failed cleanly'}; {len(now)} instances, 0 orphans, running pod intact"


def _exited(n: ProcessNode) -> bool:
    """Whether the agent died (its socket closes a moment before the process is reaped)."""
    assert n.proc is not None
    try:
        n.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.timeout(600)  # nine agent restarts in one test: minutes on a loaded 2-core machine
def test_crash_after_every_nvml_step(node: ProcessNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    keep, before = prepare(node)
    node.kill_agent()
    steps = 0
    for k in range(1, 20):  # crash just before mutating call k, i.e. right after step k-1
        n = node if k == 1 else ProcessNode(Path(tmp_path_factory.mktemp("c", numbered=True)),
                                            extra_args=(*ARGS, "--state-dir", "STATE"))
        try:
            if k > 1:
                n.extra_args = (*ARGS, "--state-dir", str(n.dir / "state"))
                keep, before = prepare(n)
                n.kill_agent()
            n.start_agent(crash_before=f"mutating:{k}")
            n.submit("big", 30000)
            ok, _ = n.admit("big", timeout=15)
            crashed = _exited(n)
            n.kill_agent()
            result = check_after_restart(n, keep, before, ok)
            TABLE.append(f"crash after NVML step {k - 1:>2}: {'agent killed' if crashed else 'no crash'}: {result}")
            if not crashed:
                steps = k - 1
                break
        finally:
            if n is not node:
                n.close()
    print("\n" + "\n".join(TABLE))
    assert steps >= 4, "the reshape should take several NVML steps (destroys, then GI and CI create)"


def test_crash_during_the_api_write(node: ProcessNode) -> None:
    keep, before = prepare(node)
    node.api.delay_next(1, 3.0, method="PATCH", path="/api/v1/namespaces/default/pods/big")
    node.submit("big", 30000)

    def kill_when_patching() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(r.method == "PATCH" and r.path.endswith("/pods/big") for r in node.api.requests):
                node.kill_agent()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_patching)
    killer.start()
    ok, _ = node.admit("big", timeout=15)
    killer.join()
    time.sleep(3.5)  # the API server applies the delayed write although its client is gone
    result = check_after_restart(node, keep, before, ok)
    print(f"\ncrash during the record write: {result}")
    assert not ok
