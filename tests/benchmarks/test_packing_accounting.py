"""The packing simulator's accounting on tiny traces computed by hand (no matplotlib needed).

Model: one A100-SXM4-80GB. Tiers (real memory): 9728 (1g), 19968 (2 slices), 40192 (4 slices),
80896 MiB (whole GPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.packing_sim.hami_v29 import HamiGeometries
from benchmarks.packing_sim.hardware import NodeFeasibility, gpu_vectors, maximal
from benchmarks.packing_sim.metrics import summarize
from benchmarks.packing_sim.oracle import RepackOracle
from benchmarks.packing_sim.planned import PlannerScheme
from benchmarks.packing_sim.schemes import geometries
from benchmarks.packing_sim.sim import simulate
from benchmarks.packing_sim.static import StaticScheme, operator_layout
from benchmarks.packing_sim.workload import (
    Pod,
    TraceSpec,
    generate,
    offered_load,
    read_csv,
    read_openb,
    scale_to_load,
    write_csv,
)
from hami_mig.mig.catalogue import default_catalogue

A80 = default_catalogue().lookup("A100-SXM4-80GB")

# id, arrival, duration, gpumem
TRACE = [
    Pod(0, 0.0, 10.0, 30000),  # tier 2 -> 3g@0
    Pod(1, 1.0, 2.0, 30000),  # tier 2 -> 3g@4, leaves at 3.0
    Pod(2, 2.0, 5.0, 5000),  # tier 0: both 3g busy -> refused
    Pod(3, 3.0, 1.0, 70000),  # whole: pod 1 left at 3.0, but a free 3g does not cover it -> refused
    Pod(4, 4.0, 1.0, 15000),  # tier 1 -> 3g@4 (smallest free covering), leaves at 5.0
    Pod(5, 6.0, 1.0, 8000),  # tier 0 -> 3g@4; the run ends at this last arrival
]


def all_3g() -> StaticScheme:
    return StaticScheme("static all-3g", A80, 1, operator_layout(A80, "all-3g"))


def test_dropped_accounting_by_hand() -> None:
    result = simulate(all_3g(), TRACE, A80, 1)
    s = summarize(result)
    assert [o.admission is not None for o in result.outcomes] == [True, True, False, False, True, True]
    assert s.admitted_pct == pytest.approx(100 * 4 / 6)
    assert s.memory_pct == pytest.approx(100 * 83000 / 158000)
    assert s.tier_pct == pytest.approx((50.0, 100.0, 100.0, 0.0))
    # pod 2: 2x 3g in use cover all 8 slices and 3g+3g+1g needs 9 -> no capacity; pod 3: 3g + 7g never fit
    assert [o.refusal for o in result.outcomes] == [None, None, "none", "none", None, None]
    assert s.refusal_pct == pytest.approx((0.0, 0.0, 100 * 2 / 6))
    # slices held: [0,1) 4, [1,3) 8, [3,4) 4, [4,5) 8, [5,6) 4 -> 36 of 8 x 6
    assert result.slice_time == pytest.approx(36.0)
    assert s.slice_util_pct == pytest.approx(75.0)
    assert s.ops_per_admit == 0.0 and s.undersized_pct == 0.0
    assert s.pending_mean == 0.0 and s.still_pending_pct == 0.0


def test_queued_accounting_by_hand() -> None:
    result = simulate(all_3g(), TRACE, A80, 1, queued=True)
    s = summarize(result)
    admitted_at = [o.admitted_at for o in result.outcomes]
    # pod 2 waits from 2.0 until pod 1 leaves at 3.0 (departures before arrivals at equal times);
    # pods 3, 4 and 5 then find pods 0 and 2 on both 3g instances until the end
    assert admitted_at == [0.0, 1.0, 3.0, None, None, None]
    assert s.admitted_pct == pytest.approx(50.0)
    assert s.pending_mean == pytest.approx(1 / 3)
    assert s.still_pending_pct == pytest.approx(50.0)
    assert result.slice_time == pytest.approx(4 + 16 + 24)


def test_refusal_classes_by_hand() -> None:
    trace = [Pod(i, float(i), 100.0, mem) for i, mem in enumerate([5000, 5000, 5000, 5000, 30000, 70000])]
    result = simulate(StaticScheme("static all-2g", A80, 1, operator_layout(A80, "all-2g")), trace, A80, 1)
    # three 2g instances (slices 0-5) hold pods 0-2; pod 3 (1g-sized) could get a 1g at slice 6: "free";
    # pod 4 (3g) has no free placement, but 3x 1g + 3g re-packed fit: "move"; pod 5 (7g): "none"
    assert [o.refusal for o in result.outcomes] == [None, None, None, "free", "move", "none"]


def test_window_and_warmup() -> None:
    result = simulate(all_3g(), TRACE, A80, 1, warmup=3.0)
    assert [o.pod.id for o in result.outcomes] == [3, 4, 5]
    # [3,4) 4, [4,5) 8, [5,6) 4 slices
    assert result.slice_time == pytest.approx(16.0)
    assert summarize(result).slice_util_pct == pytest.approx(100 * 16 / 24)


def test_real_planner_counts_nvml_operations() -> None:
    scheme = PlannerScheme("best-fit/any", A80, 1, geometries(A80), "best-fit", "any")
    trace = [Pod(0, 0.0, 1.0, 5000), Pod(1, 2.0, 1.0, 5000), Pod(2, 2.5, 1.0, 70000)]
    result = simulate(scheme, trace, A80, 1)
    ops = [o.admission.ops if o.admission else None for o in result.outcomes]
    # create a 1g; after pod 0 leaves the free 1g is reused (0 ops); the whole-GPU pod cannot be placed
    # around the in-use 1g
    assert ops == [1, 0, None]
    assert result.outcomes[2].refusal == "none"
    assert [i.in_use for i in scheme.gpus[0].instances] == [True]
    assert scheme.clock.decisions == 3


def test_hami_v26_first_entry_rule_and_reconfiguration_cost() -> None:
    scheme = HamiGeometries("HAMi <= v2.6", A80, 2, geometries(A80), first_entry=True, strict=True)
    trace = [Pod(0, 0.0, 5.0, 15000), Pod(1, 1.0, 5.0, 5000), Pod(2, 2.0, 5.0, 70000), Pod(3, 3.0, 5.0, 70000)]
    result = simulate(scheme, trace, A80, 2)
    got = [(o.admission.gpu, o.admission.profile, o.admission.ops) if o.admission else None for o in result.outcomes]
    # 15000 MiB skips `1x 1g + 3x 2g` (its FIRST entry, the 1g, is too small) and takes `2x 3g`:
    # 2 creates; the 1g-sized pod then fills the other 3g (geometry locked); the whole-GPU pod
    # reconfigures idle GPU 1 to 7g (1 create); the next one finds no idle GPU
    assert got == [(0, "3g.40gb", 2), (0, "3g.40gb", 0), (1, "7g.80gb", 1), None]


def test_oracle_repacks() -> None:
    trace = [Pod(0, 0.0, 9.0, 5000), Pod(1, 0.1, 9.0, 5000), Pod(2, 0.2, 9.0, 30000), Pod(3, 0.3, 9.0, 30000)]
    result = simulate(RepackOracle("oracle", A80, 1), trace, A80, 1)
    # 2x 1g + 3g fit; a second 3g does not (4 + 4 + 1 + 1 > 8 slices)
    assert [o.admission is not None for o in result.outcomes] == [True, True, True, False]


def test_node_feasibility_matches_brute_force() -> None:
    one = maximal(gpu_vectors(A80))
    two = set()
    for a in gpu_vectors(A80):
        for b in gpu_vectors(A80):
            two.add(tuple(x + y for x, y in zip(a, b, strict=True)))
    node = NodeFeasibility(A80, 2)
    for v in [(7, 0, 0, 1), (14, 0, 0, 0), (8, 0, 0, 1), (2, 1, 1, 1), (0, 4, 2, 0), (0, 8, 0, 0), (0, 0, 0, 3)]:
        assert node.fits(v) == (v in two), v
    assert (7, 0, 0, 0) in one and (0, 0, 0, 1) in one


def test_lp_bound_is_above_every_scheme() -> None:
    from benchmarks.packing_sim.bound import lp_bound  # scipy: a declared test dependency

    spec = TraceSpec(A80.name, 2, "uniform", 1.2, 150, seed=7, warmup=1.0)
    pods = generate(spec, A80)
    bound = lp_bound(pods, A80, 2, spec.warmup)
    for scheme in (RepackOracle("oracle", A80, 2), PlannerScheme("bf", A80, 2, geometries(A80), "best-fit", "any")):
        s = summarize(simulate(scheme, pods, A80, 2, warmup=spec.warmup))
        assert s.admitted_pct <= bound.admitted_pct + 1e-6
        assert s.memory_pct <= bound.memory_pct + 1e-6


def test_traces_are_seeded_and_round_trip(tmp_path: Path) -> None:
    spec = TraceSpec(A80.name, 8, "bursty", 1.0, 400, seed=3)
    pods = generate(spec, A80)
    assert pods == generate(spec, A80)
    assert pods != generate(TraceSpec(A80.name, 8, "bursty", 1.0, 400, seed=4), A80)
    assert 0.6 < offered_load(pods, 8, A80, spec.warmup, pods[-1].arrival) < 1.5
    path = tmp_path / "trace.csv"
    write_csv(path, pods)
    back = read_csv(path)
    assert [p.gpumem for p in back] == [p.gpumem for p in pods]
    assert [round(p.arrival, 6) for p in back] == [round(p.arrival, 6) for p in pods]


def test_openb_trace_rows_become_mig_pods_and_rescale_to_a_load(tmp_path: Path) -> None:
    # the header and row shapes of Alibaba's cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv
    path = tmp_path / "openb.csv"
    path.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
        "scheduled_time\n"
        "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,100,0\n"
        "openb-pod-0001,6000,12288,1,460,,LS,Running,10,30,10\n"
        "openb-pod-0002,20000,65536,0,0,,LS,Running,20,60,20\n"
        "openb-pod-0003,88000,327680,8,1000,,Burstable,Succeeded,30,50,30\n"
        "openb-pod-0004,4000,15258,1,110,,BE,Running,40,41,40\n")
    pods = read_openb(path, A80)
    # single-GPU pods with a share only; the share of the largest instance (7g.80gb, 80896 MiB)
    assert [(p.arrival, p.duration, p.gpumem) for p in pods] == [
        (0.0, 100.0, 80896), (10.0, 20.0, 37212), (40.0, 1.0, 8899)]
    scaled, start = scale_to_load(pods, 1, A80, 0.5, warmup_fraction=0.4)
    assert start == 10.0
    assert [p.arrival for p in scaled] == [0.0, 10.0, 40.0]
    assert offered_load(scaled, 1, A80, start, 40.0) == pytest.approx(0.5)
