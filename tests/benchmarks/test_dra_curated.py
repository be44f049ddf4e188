"""The planner-curated DRA driver (benchmarks/packing_sim/dra_curated.py): order, lag, and no double booking.

The planner's own choices are never hard-coded here (the planner evolves): the tests compare the
curated driver with `PlannerScheme` (best-fit/any) and with `decide`, and check invariants.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.packing_sim.dra import DraFirstFit
from benchmarks.packing_sim.dra_curated import DraCurated, DraStaticOrder, curated_list
from benchmarks.packing_sim.dra_runs import dra_entries, reference_entries
from benchmarks.packing_sim.planned import PlannerScheme
from benchmarks.packing_sim.schemes import BEST_ANY, geometries
from benchmarks.packing_sim.sim import simulate
from benchmarks.packing_sim.workload import Pod, TraceSpec, generate, tier_sizes
from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance, check_layout

CAT = default_catalogue()
A80 = CAT.lookup("A100-SXM4-80GB")
A30 = CAT.lookup("NVIDIA A30")


def best_fit(gpus: list[GpuState], gpumem: int) -> Decision:
    return decide(gpus, Request(memory_mib=gpumem), None, "best-fit", "any")


def busy_node(model: GpuModel, gpus: int, seed: int) -> list[GpuState]:
    """GPUs as best-fit/any leaves them after part of a trace (some instances in use, some free)."""
    scheme = PlannerScheme("bf", model, gpus, geometries(model), "best-fit", "any")
    pods = generate(TraceSpec(model.name, gpus, "uniform", 1.0, 120, seed=seed, warmup=0.5), model)
    simulate(scheme, pods[:80], model, gpus, classify=False)
    return scheme.gpus


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_curated_list_is_memory_ordered_and_leads_with_the_planners_choice(seed: int) -> None:
    gpus = busy_node(A80, 3, seed)
    listed = curated_list(A80, gpus, 3, best_fit)
    mems = [d.profile.memory_mib for d in listed]
    assert mems == sorted(mems)
    assert len({d.key for d in listed}) == len(listed)
    for size in tier_sizes(A80):
        for gpumem in (size, size - 100):
            want = best_fit(gpus, gpumem)
            first = next((d for d in listed if d.profile.memory_mib >= gpumem), None)
            if not want.fits:
                assert first is None or first.profile.memory_mib > size
                continue
            a = want.allocations[0]
            assert first is not None and first.key == (a.gpu_index, a.profile, a.start)


def test_fresh_curated_admits_exactly_as_best_fit_any() -> None:
    spec = TraceSpec(A80.name, 4, "uniform", 1.2, 400, seed=11, warmup=1.0)
    pods = generate(spec, A80)
    planner = simulate(PlannerScheme("bf", A80, 4, geometries(A80), "best-fit", "any"), pods, A80, 4)
    curated = DraCurated("curated", A80, 4, geometries(A80))
    dra = simulate(curated, pods, A80, 4)
    assert [o.admission for o in dra.outcomes] == [o.admission for o in planner.outcomes]
    assert any(o.admission is None for o in dra.outcomes)  # the trace does saturate the node
    admitted = [o for o in dra.outcomes if o.admitted_at is not None]
    end = max(p.arrival for p in pods)
    departed = [o for o in admitted if o.admitted_at is not None and o.admitted_at + o.pod.duration <= end]
    assert curated.admissions == len(admitted)
    assert curated.republishes == len(admitted) + len(departed)  # one republish per admission and departure


def test_lag_places_successive_pods_from_one_list() -> None:
    trace = [Pod(i, 0.1 * i, 100.0, 5000) for i in range(3)] + [Pod(3, 0.4, 100.0, 15000)]
    lagged = DraCurated("lag 3", A80, 1, geometries(A80), lag=3, departures=False)
    planner = PlannerScheme("bf", A80, 1, geometries(A80), "best-fit", "any")
    got = simulate(lagged, trace, A80, 1, classify=False)
    want = simulate(planner, trace, A80, 1, classify=False)
    # ranks 1..3 of the 1g tier are the planner's successive choices: the same three instances
    assert [o.admission for o in got.outcomes[:3]] == [o.admission for o in want.outcomes[:3]]
    assert lagged.computed == 2  # one list at start, one after the third admission
    assert lagged.republishes == 1  # the fourth admission has not reached K yet


def test_stale_list_reuses_a_freed_device_without_republishing() -> None:
    trace = [Pod(0, 0.0, 1.0, 30000), Pod(1, 2.0, 5.0, 30000)]
    lagged = DraCurated("lag 5", A80, 1, geometries(A80), lag=5, departures=False)
    result = simulate(lagged, trace, A80, 1, classify=False)
    first, second = (o.admission for o in result.outcomes)
    assert first is not None and second is not None
    assert (second.gpu, second.profile) == (first.gpu, first.profile)
    assert second.ops == 0  # the free instance pod 0 left is reused
    assert lagged.computed == 1
    fresh = DraCurated("fresh", A80, 1, geometries(A80))
    simulate(fresh, trace, A80, 1, classify=False)
    assert fresh.computed == 2 and fresh.republishes == 3  # admission, departure, admission


def test_departures_republished_variant_recomputes_after_a_departure() -> None:
    trace = [Pod(0, 0.0, 1.0, 5000), Pod(1, 2.0, 5.0, 5000)]
    scheme = DraCurated("lag 4 + dep", A80, 1, geometries(A80), lag=4, departures=True)
    simulate(scheme, trace, A80, 1, classify=False)
    assert scheme.computed == 2 and scheme.republishes == 1


def test_lag_must_be_positive() -> None:
    with pytest.raises(ValueError, match="K >= 1"):
        DraCurated("bad", A80, 1, geometries(A80), lag=0)


def test_static_order_is_smallest_first_and_never_republishes() -> None:
    scheme = DraStaticOrder("static", CAT.lookup("A100-SXM4-40GB"), 2, geometries(CAT.lookup("A100-SXM4-40GB")))
    first = scheme.published[0]
    assert (first.gpu, first.profile.name, first.start) == (0, "1g.5gb", 0)
    assert all(not d.profile.media_extension for d in scheme.published)
    simulate(scheme, [Pod(0, 0.0, 1.0, 4000), Pod(1, 2.0, 1.0, 9000)], scheme.model, 2, classify=False)
    assert scheme.republishes == 0 and scheme.computed == 0


def test_reference_rows_are_the_main_benchmarks() -> None:
    names = [e.name for e in reference_entries(A80, 2)]
    assert BEST_ANY in names and any(n.startswith("HAMi") for n in names)
    assert len({e.name for e in dra_entries(A80, 2)}) == len(dra_entries(A80, 2))


# --------------------------------------------------------------------------- no double booking, ever

SCHEMES = [
    lambda m: DraFirstFit("ff", m, 2),
    lambda m: DraFirstFit("ff random", m, 2, "random", seed=1),
    lambda m: DraStaticOrder("static", m, 2, geometries(m)),
    lambda m: DraCurated("fresh", m, 2, geometries(m)),
    lambda m: DraCurated("lag 3", m, 2, geometries(m), lag=3, departures=False),
    lambda m: DraCurated("lag 2 + dep", m, 2, geometries(m), lag=2, departures=True),
]
STEPS = st.lists(st.tuples(st.booleans(), st.integers(1, 90_000), st.integers(0, 50)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(SCHEMES) - 1), model=st.sampled_from([A80, A30]), steps=STEPS)
def test_counters_never_let_two_allocations_overlap(which: int, model: GpuModel,
                                                    steps: list[tuple[bool, int, int]]) -> None:
    scheme = SCHEMES[which](model)
    running: list[Pod] = []
    for n, (arrive, gpumem, pick) in enumerate(steps):
        if arrive or not running:
            pod = Pod(n, float(n), 1.0, gpumem)
            admission = scheme.admit(pod)
            if admission is not None:
                assert admission.instance_mib >= gpumem
                running.append(pod)
        else:
            scheme.release(running.pop(pick % len(running)))
        held = scheme.in_use()
        assert sum(len(h) for h in held) == len(running)
        for gpu, placements in enumerate(held):
            check_layout(model, [Instance(p, s, True) for p, s in placements], f"gpu[{gpu}]")
        if isinstance(scheme, DraCurated):  # the scheduler's view == the node's in-use instances
            assert sorted(scheme.allocated.devices) == sorted(
                (g.index, i.profile, i.start) for g in scheme.gpus for i in g.in_use())


def test_lag_without_departures_shows_the_gpus_as_they_were_at_the_republish() -> None:
    # lag 1: republished right after pod 0's admission (GPU full), not after its departure; pod 1
    # meets that list, whose only free entry is pod 0's own whole-GPU device in the allocated tail
    trace = [Pod(0, 0.0, 1.0, 70000), Pod(1, 2.0, 1.0, 5000)]
    lagged = DraCurated("lag 1", A80, 1, geometries(A80), lag=1, departures=False)
    got = simulate(lagged, trace, A80, 1, classify=False)
    assert [o.admission.profile if o.admission else None for o in got.outcomes] == ["7g.80gb", "7g.80gb"]
    fresh = DraCurated("fresh", A80, 1, geometries(A80))
    got = simulate(fresh, trace, A80, 1, classify=False)
    second = got.outcomes[1].admission
    assert second is not None and second.profile != "7g.80gb"  # a fresh list offers a 1g-sized device
