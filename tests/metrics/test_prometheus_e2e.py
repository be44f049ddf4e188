"""A real Prometheus scrapes a MetricsServer: labels and values arrive, changes show, removed slots go stale."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hami_mig.agent.snapshot import Holder, SlotView
from hami_mig.metrics import AgentStats, MetricsServer, build_registry

from .expo import SnapshotBox, get
from .snapshots import busy_gpu, idle_gpu, inst, node

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed (Debian package `prometheus`; "
                                                   "scripts/test.sh installs it)"),
]
DEADLINE_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Prom:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = get(f"{self.base}/api/v1/query?query={urllib.parse.quote(promql)}")
        assert r.status == 200, r.body
        body = json.loads(r.body)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def series(self, promql: str) -> dict[str, float]:
        """{"<deviceidx>/<migname>": value} of an instant vector of nodeGPUMigInstance series."""
        return {f'{s["metric"]["deviceidx"]}/{s["metric"]["migname"]}': float(s["value"][1])
                for s in self.query(promql)}

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; prometheus log:\n{self.log.read_text()[-2000:]}")


@pytest.fixture
def prom(tmp_path: Path, server: MetricsServer) -> Iterator[Prom]:
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"- job_name: hami-mig\n  static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield Prom(f"http://127.0.0.1:{port}", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def server(box: SnapshotBox) -> Iterator[MetricsServer]:
    stats = AgentStats()
    stats.count_reshape("create", "ok")
    with MetricsServer(build_registry(box, stats), port=0, host="127.0.0.1") as srv:
        yield srv


@pytest.fixture
def box() -> SnapshotBox:
    return SnapshotBox(node(busy_gpu(0), idle_gpu(1)))


def test_prometheus_scrapes_changes_and_staleness(prom: Prom, box: SnapshotBox) -> None:
    def ready() -> bool:
        try:
            return len(prom.query('nodeGPUMigInstance{job="hami-mig"}')) == 4
        except (OSError, AssertionError):
            return False  # not listening yet

    prom.wait_for("the first scrape", ready)
    assert prom.series("nodeGPUMigInstance") == {
        "0/1g.5gb-0": 1.0, "0/2g.10gb-1": 1.0, "0/2g.10gb-2": 0.0, "0/2g.10gb-3": 0.0}
    (one,) = prom.query('nodeGPUMigInstance{migname="1g.5gb-0"}')
    labels = {k: v for k, v in one["metric"].items() if k not in ("instance", "job")}
    assert labels == {"__name__": "nodeGPUMigInstance", "deviceidx": "0", "deviceuuid": "GPU-0000",
                      "migname": "1g.5gb-0", "nodeid": "node-a", "zone": "vGPU"}
    (up,) = prom.query('up{job="hami-mig"}')
    assert up["value"][1] == "1"  # the OpenMetrics exposition Prometheus asked for parsed cleanly
    assert prom.query('hami_mig_reshape_operations_total{op="create",result="ok"}')[0]["value"][1] == "1"
    assert prom.query('hami_mig_build_info')[0]["metric"]["version"]

    # An allocation on GPU 0 (slot 2g.10gb-2 taken) and a reshape of GPU 1 (its first instance, geometry 0);
    # GPU 0's last slot disappears (its free instance destroyed, a 3g.20gb needs no slot of its own here).
    gpu0 = dataclasses.replace(busy_gpu(0), slots=(
        SlotView(0, "1g.5gb", True), SlotView(1, "2g.10gb", True), SlotView(2, "2g.10gb", True)))
    gpu1 = dataclasses.replace(idle_gpu(1), geometry_index=2, slots=(
        SlotView(0, "3g.20gb", True), SlotView(1, "3g.20gb", False)),
        instances=(inst("3g.20gb", 4, 4, 19968, Holder("ml", "big", 0), gpu=1),),
        free_capacity={"1g.5gb": 4, "2g.10gb": 2, "3g.20gb": 1, "7g.40gb": 0})
    box.set(node(gpu0, gpu1))
    expected = {"0/1g.5gb-0": 1.0, "0/2g.10gb-1": 1.0, "0/2g.10gb-2": 1.0, "1/3g.20gb-0": 1.0, "1/3g.20gb-1": 0.0}
    prom.wait_for("the reshaped layout", lambda: prom.series("nodeGPUMigInstance") == expected)
    assert prom.query('nodeGPUMigInstance{migname="2g.10gb-3"}') == []  # stale: gone at once, not 5 min later
    assert prom.query('vGPUMemoryAllocated{podname="big"}')[0]["value"][1] == str(19968 * 2**20)
    assert prom.query('sum(hami_mig_free_capacity{profile="1g.5gb"})')[0]["value"][1] == "7"  # 3 + 4
