"""Planner behaviour: worked examples of each policy, and invariants under hypothesis."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hami_mig.mig.catalogue import GpuModel
from hami_mig.mig.geometry import GpuGeometries, default_device_config, resolve_for_gpu
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import apply_decision, cores_ok, covers, decide, plan_slot
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance, check_layout

from .strategies import CAT, MODELS, gpu_states, nodes, requests

CONFIG = default_device_config()


def lookup(gpu: GpuState) -> GpuGeometries:
    return resolve_for_gpu(CONFIG, gpu.model, CAT)


def gpu(model: str, *instances: tuple[str, int, bool], index: int = 0) -> GpuState:
    return GpuState(index, f"GPU-{index}", CAT.lookup(model)).with_instances(
        Instance(p, s, u, f"MIG-{index}-{p}-{s}") for p, s, u in instances)


def only(decision: Decision) -> tuple[str, int, bool, int | None, int | None]:
    assert decision.fits, decision.reason
    (a,) = decision.allocations
    return a.profile, a.start, a.reuse, a.geometry_index, a.slot


# --------------------------------------------------------------------------- worked examples

A40 = "NVIDIA A100-SXM4-40GB"
A80 = "NVIDIA A100-SXM4-80GB"


def test_nominal_5120_request_gets_the_next_real_fit() -> None:
    # HAMi compares 5120 with the nominal 1g.5gb (5120) and hands out 4864 MiB; we skip to 2g.10gb.
    d = decide([gpu(A40)], Request(memory_mib=5120), lookup)
    assert only(d) == ("2g.10gb", 0, False, 1, 1)
    assert [o.op for o in d.operations] == ["create"]


def test_small_request_takes_first_geometry_slot() -> None:
    assert only(decide([gpu(A40)], Request(memory_mib=4000), lookup))[:1] == ("1g.5gb",)


def test_geometry_changes_while_instances_are_in_use() -> None:
    # A 1g in use at 6 (geometry 1's 1g slot); a 9000 MiB pod gets a 2g beside it, the 1g untouched.
    d = decide([gpu(A40, ("1g.5gb", 6, True))], Request(memory_mib=9000), lookup)
    profile, start, reuse, geo, _slot = only(d)
    assert (profile, geo, reuse) == ("2g.10gb", 1, False)
    assert start in (0, 2, 4)
    assert all(o.op == "create" for o in d.operations)


def test_geometry_that_would_move_an_in_use_instance_is_skipped() -> None:
    # 1g at 0 in use: geometry 1 needs its 1g at 6 (2g at 0,2,4), so only geometry 0 (7x 1g) keeps it.
    d = decide([gpu(A40, ("1g.5gb", 0, True))], Request(memory_mib=9000), lookup)
    assert not d.fits
    assert "1g.5gb@0" in d.reason


def test_free_instance_reused_when_it_is_the_chosen_slot() -> None:
    d = decide([gpu(A40, ("2g.10gb", 2, False), ("1g.5gb", 6, True))], Request(memory_mib=9000), lookup)
    assert only(d) == ("2g.10gb", 2, True, 1, 1)
    assert d.operations == ()
    assert d.allocations[0].uuid == "MIG-0-2g.10gb-2"


def test_larger_free_instance_is_not_reused_for_a_small_request() -> None:
    # A free 7g covers 4000 MiB, but the first fitting slot is a 1g: destroy the 7g, create the 1g.
    d = decide([gpu(A40, ("7g.40gb", 0, False))], Request(memory_mib=4000), lookup)
    profile, _start, reuse, _g, _s = only(d)
    assert (profile, reuse) == ("1g.5gb", False)
    assert [(o.op, o.profile) for o in d.operations] == [("destroy", "7g.40gb"), ("create", "1g.5gb")]


def test_whole_gpu_request_gets_largest_profile() -> None:
    # HAMi v2.9 records a bare GPU here (100 % > 7g.80gb's memory); we give the 7g.
    assert only(decide([gpu(A80)], Request(), lookup))[:2] == ("7g.80gb", 0)
    assert only(decide([gpu(A80)], Request(memory_percent=100), lookup))[:2] == ("7g.80gb", 0)


def test_percentage_counts_memory_slices() -> None:
    # 50 % of an A100-80GB: 3g.40gb owns 4 of 8 slices (its 40192 MiB is < 40960 = 50 % of 81920).
    assert only(decide([gpu(A80)], Request(memory_percent=50), lookup))[0] == "3g.40gb"
    assert only(decide([gpu(A80)], Request(memory_percent=12), lookup))[0] == "1g.10gb"


def test_multi_gpu_request_is_planned_per_gpu() -> None:
    # HAMi refuses one container asking 2x 25000 MiB on two idle A100-40GB; each gets its own 7g here.
    d = decide([gpu(A40, index=0), gpu(A40, index=1)], Request(count=2, memory_mib=25000), lookup)
    assert d.fits
    assert sorted((a.gpu_index, a.profile) for a in d.allocations) == [(0, "7g.40gb"), (1, "7g.40gb")]


def test_count_above_gpus_is_refused_with_reason() -> None:
    d = decide([gpu(A40)], Request(count=2, memory_mib=1000), lookup)
    assert not d.fits and "the node has 1 GPU" in d.reason


def test_too_large_request_names_the_limit() -> None:
    d = decide([gpu(A40)], Request(memory_mib=50000), lookup)
    assert not d.fits and "largest profile is 7g.40gb (40320 MiB)" in d.reason


def test_unmatched_model_is_explained() -> None:
    d = decide([gpu("NVIDIA GB200")], Request(memory_mib=1000), lookup)
    assert not d.fits and "no knownMigGeometries entry matches" in d.reason


def test_any_mode_places_beside_in_use_instances() -> None:
    # Geometry mode `config` cannot host 15000 MiB beside 1g@0 (in use); `any` puts a 2g.20gb at 2.
    state = [gpu(A80, ("1g.10gb", 0, True))]
    assert not decide(state, Request(memory_mib=15000), lookup).fits
    d = decide(state, Request(memory_mib=15000), lookup, policy="best-fit", mode="any")
    profile, start, *_ = only(d)
    assert profile in ("2g.20gb", "1g.20gb") and start >= 2


def test_best_fit_packs_onto_the_busy_gpu() -> None:
    busy = gpu(A80, ("3g.40gb", 0, True), index=0)
    idle = gpu(A80, index=1)
    d = decide([busy, idle], Request(memory_mib=9000), lookup, policy="best-fit", mode="any")
    assert d.allocations[0].gpu_index == 0
    assert d.allocations[0].profile == "1g.10gb"
    # HAMi's walk per GPU: the in-use 3g locks GPU 0 to geometry 2, whose free slot is the other 3g;
    # the idle GPU 1 walks to geometry 0's 1g. Between the two picks the smaller instance wins.
    d = decide([busy, idle], Request(memory_mib=9000), lookup, policy="hami", mode="config")
    assert (d.allocations[0].gpu_index, d.allocations[0].profile) == (1, "1g.10gb")
    d = decide([busy], Request(memory_mib=9000), lookup, policy="hami", mode="config")
    assert (d.allocations[0].gpu_index, d.allocations[0].profile) == (0, "3g.40gb")


def test_best_fit_prefers_the_smallest_covering_profile() -> None:
    d = decide([gpu(A80)], Request(memory_mib=15000), lookup, policy="best-fit", mode="any")
    assert d.allocations[0].memory_mib == 19968


def test_plan_slot_realizes_the_scheduler_choice() -> None:
    g = gpu(A40, ("1g.5gb", 6, True))
    d = plan_slot(g, lookup(g), 1, 2)
    assert d.fits and d.allocations[0].profile == "2g.10gb" and d.allocations[0].slot == 2
    assert not plan_slot(g, lookup(g), 2, 0).fits  # 2x 3g cannot keep the 1g in place
    assert not plan_slot(g, lookup(g), 1, 9).fits
    assert not plan_slot(g, lookup(g), 7, 0).fits


# --------------------------------------------------------------------------- invariants


def check_safe(gpus: Sequence[GpuState], request: Request, d: Decision) -> None:
    by_index = {g.index: g for g in gpus}
    if not d.fits:
        assert d.reason
        return
    assert len(d.allocations) == request.count
    assert len({a.gpu_index for a in d.allocations}) == request.count
    for op in d.operations:
        g = by_index[op.gpu_index]
        lay = for_model(g.model)
        m = profile_mask(g.model.profile(op.profile), op.start)
        if op.op == "destroy":
            victim = next(i for i in g.instances if i.key() == (op.profile, op.start))
            assert not victim.in_use, f"plan destroys in-use {victim}"
        else:
            assert not lay.occupied(i.key() for i in g.in_use()) & m, "create overlaps an in-use instance"
    after = {g.index: g for g in apply_decision(gpus, d)}
    for g in gpus:
        check_layout(g.model, after[g.index].instances)
        kept = {i.key() for i in after[g.index].instances}
        assert all(i.key() in kept for i in g.in_use()), "an in-use instance moved or vanished"
    for a in d.allocations:
        model = by_index[a.gpu_index].model
        p = model.profile(a.profile)
        assert covers(p, model, request)
        if a.reuse:
            assert not any(o.gpu_index == a.gpu_index for o in d.operations)
        # every destroy on this GPU frees slices the new instance needs
        for op in d.operations:
            if op.op == "destroy" and op.gpu_index == a.gpu_index:
                dm = profile_mask(model.profile(op.profile), op.start)
                assert dm & profile_mask(p, a.start), "destroyed an instance that was not in the way"


POLICY_MODES = st.sampled_from([("hami", "config"), ("best-fit", "config"), ("hami", "any"), ("best-fit", "any")])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(), requests(), POLICY_MODES)
def test_never_touches_in_use_and_result_is_legal(gpus: list[GpuState], request: Request, pm: tuple[str, str]) -> None:
    d = decide(gpus, request, lookup, policy=pm[0], mode=pm[1])  # type: ignore[arg-type]
    check_safe(gpus, request, d)


def fits_empty(model: GpuModel, request: Request, mode: str) -> bool:
    if mode == "any":
        return any(covers(p, model, request) and cores_ok(request, p, model) for p in model.plannable)
    g = GpuState(0, "GPU-0", model)
    return any(covers(s.profile, model, request) and cores_ok(request, s.profile, model, s.core)
               for geo in lookup(g).geometries for s in geo.slots)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), requests(max_count=1), POLICY_MODES)
def test_request_that_fits_an_empty_gpu_always_gets_one(model: GpuModel, request: Request, pm: tuple[str, str]) -> None:
    d = decide([GpuState(0, "GPU-0", model)], request, lookup, policy=pm[0], mode=pm[1])  # type: ignore[arg-type]
    assert d.fits == fits_empty(model, request, pm[1])
    if d.fits:
        assert d.operations and d.operations[-1].op == "create"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), st.integers(1, 150000))
def test_hami_policy_matches_hami_on_an_idle_gpu(model: GpuModel, mib: int) -> None:
    """Same geometry and profile as HAMi's nominal walk, except where nominal memory overstates the
    real memory: then the next slot in HAMi's order whose real memory covers the request."""
    g = GpuState(0, "GPU-0", model)
    geos = lookup(g).geometries
    rule = next(r for r in CONFIG.rules if any(CAT.find(m) is model for m in r.models))
    hami_walk = [(gi, e) for gi, geo in enumerate(rule.geometries) for e in geo.slots]
    hami = next(((gi, e.name) for gi, e in hami_walk if e.memory >= mib), None)
    ours = decide([g], Request(memory_mib=mib), lookup)
    real = {s.profile.name: s.profile.memory_mib for geo in geos for s in geo.slots}
    if hami is not None and real[hami[1]] >= mib:
        assert ours.fits
        a = ours.allocations[0]
        assert (a.geometry_index, a.profile) == hami
    else:
        expected = next(((gi, e.name) for gi, e in hami_walk if real[e.name] >= mib), None)
        if expected is None:
            assert not ours.fits
        else:
            a = ours.allocations[0]
            assert (a.geometry_index, a.profile) == expected


@settings(max_examples=200, deadline=None)
@given(nodes(max_gpus=3), st.lists(requests(max_count=1), min_size=1, max_size=12), POLICY_MODES)
def test_sequences_of_admissions_stay_safe(gpus: list[GpuState], reqs: list[Request], pm: tuple[str, str]) -> None:
    state = gpus
    for r in reqs:
        d = decide(state, r, lookup, policy=pm[0], mode=pm[1])  # type: ignore[arg-type]
        check_safe(state, r, d)
        if d.fits:
            state = apply_decision(state, d)


@given(nodes(), requests())
def test_decisions_are_deterministic(gpus: list[GpuState], request: Request) -> None:
    assert decide(gpus, request, lookup) == decide(list(gpus), request, lookup)


@pytest.mark.parametrize("bad", [{"policy": "worst-fit"}, {"mode": "some"}])
def test_bad_policy_is_rejected(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        decide([gpu(A40)], Request(memory_mib=1), lookup, **bad)  # type: ignore[arg-type]


@given(gpu_states())
def test_generated_states_are_legal(g: GpuState) -> None:
    check_layout(g.model, g.instances)
