"""AgentStats: what the agent counts, exposed exactly, safely under concurrency."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.registry import CollectorRegistry

from hami_mig.metrics import ALLOCATE_BUCKETS, ALLOCATE_OUTCOMES, AgentStats
from hami_mig.metrics.stats import MAX_VALUES_PER_FAMILY, OTHER

from .expo import lines, text, values


def registry(stats: AgentStats) -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(stats)
    return r


def test_buckets_cover_1ms_to_30s() -> None:
    assert ALLOCATE_BUCKETS[0] == 0.001 and ALLOCATE_BUCKETS[-1] == 30.0
    assert list(ALLOCATE_BUCKETS) == sorted(ALLOCATE_BUCKETS)


def test_allocate_histogram() -> None:
    stats = AgentStats()
    for s in (0.0004, 0.003, 0.003, 1.7, 45.0):
        stats.observe_allocate(s, "allocated")
    stats.observe_allocate(0.02, "reused")
    stats.observe_allocate(-0.5, "failed")  # a clock step backwards counts as 0
    out = text(registry(stats))
    b = "hami_mig_allocate_duration_seconds"
    assert f'{b}_bucket{{le="0.001",outcome="allocated"}} 1.0' in out
    assert f'{b}_bucket{{le="0.005",outcome="allocated"}} 3.0' in out
    assert f'{b}_bucket{{le="2.5",outcome="allocated"}} 4.0' in out
    assert f'{b}_bucket{{le="30.0",outcome="allocated"}} 4.0' in out
    assert f'{b}_bucket{{le="+Inf",outcome="allocated"}} 5.0' in out
    assert f'{b}_count{{outcome="allocated"}} 5.0' in out
    assert values(registry(stats), f"{b}_sum", "outcome")[("allocated",)] == pytest.approx(46.7064)
    assert f'{b}_bucket{{le="0.001",outcome="failed"}} 1.0' in out
    # every outcome is present from the start, so rate() sees the first event
    assert set(values(registry(AgentStats()), f"{b}_count", "outcome")) == {(o,) for o in ALLOCATE_OUTCOMES}


@pytest.mark.parametrize(("seconds", "outcome"), [(0.1, "ok"), (float("nan"), "allocated"), (float("inf"), "failed")])
def test_allocate_rejects_bad_input(seconds: float, outcome: str) -> None:
    with pytest.raises(ValueError):
        AgentStats().observe_allocate(seconds, outcome)


def test_reshape_counter() -> None:
    stats = AgentStats()
    stats.count_reshape("create", "ok")
    stats.count_reshape("create", "ok")
    stats.count_reshape("destroy", "rolled_back")
    got = values(registry(stats), "hami_mig_reshape_operations_total", "op", "result")
    assert got == {(op, r): 0.0 for op in ("create", "destroy") for r in ("ok", "failed", "rolled_back")} | {
        ("create", "ok"): 2.0, ("destroy", "rolled_back"): 1.0}
    with pytest.raises(ValueError):
        stats.count_reshape("resize", "ok")
    with pytest.raises(ValueError):
        stats.count_reshape("create", "maybe")


def test_open_ended_counters_appear_on_first_use() -> None:
    stats = AgentStats()
    out = text(registry(stats))
    for name in ("hami_mig_nvml_errors_total", "hami_mig_reconcile_repairs_total", "hami_mig_api_errors_total"):
        assert f"# TYPE {name} counter" in out and lines(out, name) == set()
    stats.count_nvml_error("NVML_ERROR_IN_USE")
    stats.count_nvml_error("NVML_ERROR_IN_USE")
    stats.count_reconcile_repair("orphan_instance")
    stats.count_api_error("conflict")
    out = text(registry(stats))
    assert lines(out, "hami_mig_nvml_errors_total") == {'hami_mig_nvml_errors_total{code="NVML_ERROR_IN_USE"} 2.0'}
    assert lines(out, "hami_mig_reconcile_repairs_total") == {
        'hami_mig_reconcile_repairs_total{kind="orphan_instance"} 1.0'}
    assert lines(out, "hami_mig_api_errors_total") == {'hami_mig_api_errors_total{kind="conflict"} 1.0'}


def test_label_values_are_bounded() -> None:
    stats = AgentStats()
    for n in range(MAX_VALUES_PER_FAMILY * 3):
        stats.count_api_error(f"kind-{n}")
    stats.count_api_error("x" * 500)
    got = values(registry(stats), "hami_mig_api_errors_total", "kind")
    assert len(got) == MAX_VALUES_PER_FAMILY
    assert got[(OTHER,)] == MAX_VALUES_PER_FAMILY * 3 + 1 - (MAX_VALUES_PER_FAMILY - 1)
    assert sum(got.values()) == MAX_VALUES_PER_FAMILY * 3 + 1


def test_concurrent_updates_are_not_lost() -> None:
    stats = AgentStats()
    r = registry(stats)

    def work() -> None:
        for n in range(2000):
            stats.observe_allocate(0.01, "allocated")
            stats.count_reshape("create", "ok")
            stats.count_nvml_error("NVML_ERROR_IN_USE")
            if n % 500 == 0:
                text(r)  # scrapes interleave with updates

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values(r, "hami_mig_allocate_duration_seconds_count", "outcome")[("allocated",)] == 16000
    assert values(r, "hami_mig_reshape_operations_total", "op", "result")[("create", "ok")] == 16000
    assert values(r, "hami_mig_nvml_errors_total", "code") == {("NVML_ERROR_IN_USE",): 16000}


def test_bad_buckets_refused() -> None:
    for buckets in ((), (1.0, 0.5), (0.1, 0.1)):
        with pytest.raises(ValueError):
            AgentStats(buckets)
