"""`promtool check metrics` on the live output of a real MetricsServer: only the findings we expect."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hami_mig.metrics import AgentStats, MetricsServer, build_registry

from .expo import get
from .snapshots import mixed_node

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; scripts/test.sh installs it)")

# HAMi's camelCase names, kept for compatibility; nothing else may be reported.
CAMEL = "metric names should be written in 'snake_case' not 'camelCase'"
# HAMi v2.9's own name hami_gpu_shared_count (cmd/scheduler/metrics.go), kept as HAMi spells it.
COUNT = 'hami_gpu_shared_count non-histogram and non-summary metrics should not have "_count" suffix'
EXPECTED_FINDINGS = {
    f"GPUDeviceCoreAllocated {CAMEL}",
    f"GPUDeviceCoreLimit {CAMEL}",
    f"GPUDeviceMemoryAllocated {CAMEL}",
    f"GPUDeviceMemoryLimit {CAMEL}",
    f"GPUDeviceSharedNum {CAMEL}",
    f"nodeGPUMemoryPercentage {CAMEL}",
    f"nodeGPUMigInstance {CAMEL}",
    f"nodeGPUOverview {CAMEL}",
    f"vGPUCoreAllocated {CAMEL}",
    f"vGPUMemoryAllocated {CAMEL}",
    COUNT,
}


def promtool(exposition: bytes) -> tuple[int, set[str]]:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=30)
    out = (done.stdout + done.stderr).decode()
    return done.returncode, {ln.strip() for ln in out.splitlines() if ln.strip()}


def scrape(legacy: bool = True, v29: bool = True) -> bytes:
    stats = AgentStats()
    stats.observe_allocate(0.2, "allocated")
    stats.count_reshape("destroy", "failed")
    stats.count_nvml_error("NVML_ERROR_IN_USE")
    stats.count_reconcile_repair("orphan_instance")
    stats.count_api_error("conflict")
    with MetricsServer(build_registry(mixed_node, stats, legacy=legacy, v29=v29), port=0, host="127.0.0.1") as srv:
        r = get(f"http://127.0.0.1:{srv.port}/metrics", {"Accept": "text/plain; version=0.0.4"})
    assert r.status == 200
    return r.body


def test_only_hamis_camelcase_names_are_flagged() -> None:
    rc, findings = promtool(scrape())
    assert findings == EXPECTED_FINDINGS
    assert rc == 3  # promtool 2.42: lint findings only (1 would be a parse error)


def test_without_legacy_names_only_hamis_count_name_is_flagged() -> None:
    rc, findings = promtool(scrape(legacy=False))
    assert findings == {COUNT}
    assert (rc, promtool(scrape(legacy=False, v29=False))) == (3, (0, set()))


def test_a_parse_error_is_not_mistaken_for_lint() -> None:
    rc, _ = promtool(b"# TYPE x gauge\nx{a=b} 1\n")
    assert rc == 1
