"""Capacity loss (the best-fit score) and how decide uses it: worked examples and brute-force properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hami_mig.mig.capacity import capacity_table, in_use_counts
from hami_mig.mig.geometry import GpuGeometries, default_device_config, resolve_for_gpu
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.planner import Candidate, any_candidates, config_candidates, decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance

from .strategies import CAT, gpu_states, nodes, requests

A80 = CAT.lookup("A100-SXM4-80GB")


def lookup(gpu: GpuState) -> GpuGeometries:
    return resolve_for_gpu(default_device_config(), gpu.model, CAT)


def state(*instances: tuple[str, int], index: int = 0) -> GpuState:
    return GpuState(index, f"GPU-{index}", A80).with_instances(Instance(p, s, True) for p, s in instances)


def test_idle_a100_80gb_has_room_for_each_size_class() -> None:
    table = capacity_table(A80)
    assert table.classes == (("1g.10gb",), ("1g.20gb", "2g.20gb"), ("3g.40gb", "4g.40gb"), ("7g.80gb",))
    assert table.weights == (1, 2, 4, 8)
    assert table.vector(0, ()) == (7, 4, 2, 1)


def test_a_1g_beside_a_busy_half_loses_less_than_on_an_idle_gpu() -> None:
    table = capacity_table(A80)
    one = A80.profile("1g.10gb")
    # idle GPU: 7 -> 6 1g, 4 -> 3 two-slice, 2 -> 1 half, 1 -> 0 whole: 1 + 2 + 4 + 8
    assert table.loss(0, (), "1g.10gb", profile_mask(one, 0)) == 15
    # a 3g.40gb in use at 4: (4, 2, 1, 0) -> (3, 1, 0, 0): 1 + 2 + 4
    busy = for_model(A80).occupied([("3g.40gb", 4)])
    assert table.loss(busy, (("3g.40gb", 1),), "1g.10gb", profile_mask(one, 0)) == 7


def test_best_fit_keeps_the_idle_gpu_whole() -> None:
    d = decide([state(index=0), state(("3g.40gb", 4), index=1)], Request(memory_mib=9000), lookup, "best-fit", "any")
    (a,) = d.allocations
    assert (a.gpu_index, a.profile) == (1, "1g.10gb")


def test_hami_config_picks_the_best_scored_gpu_among_hami_walks() -> None:
    # GPU 0 is locked to 2x 3g by its in-use 3g, so HAMi's walk offers the other 3g; GPU 1 (idle) offers a 1g.
    d = decide([state(("3g.40gb", 0), index=0), state(index=1)], Request(memory_mib=9000), lookup, "hami", "config")
    (a,) = d.allocations
    assert (a.gpu_index, a.profile, a.geometry_index) == (1, "1g.10gb", 0)


def brute_capacity(gpu: GpuState, names: tuple[str, ...]) -> int:
    """Most instances of one size class that fit around the in-use ones, by trying every count."""
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    best = 0
    for name in names:
        used = sum(1 for i in gpu.in_use() if i.profile == name)
        limit = gpu.model.profile(name).max_count - used
        n = 0
        while n < limit and lay.realizable(fixed, [name] * (n + 1)):
            n += 1
        best = max(best, n)
    return best


@settings(max_examples=150, deadline=None)
@given(gpu_states())
def test_capacity_vector_matches_brute_force(gpu: GpuState) -> None:
    table = capacity_table(gpu.model)
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    got = table.vector(fixed, in_use_counts(i.profile for i in gpu.in_use()))
    assert got == tuple(brute_capacity(gpu, names) for names in table.classes)


@settings(max_examples=150, deadline=None)
@given(gpu_states())
def test_loss_is_the_weighted_drop_and_never_negative(gpu: GpuState) -> None:
    table = capacity_table(gpu.model)
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    counts = in_use_counts(i.profile for i in gpu.in_use())
    for c in any_candidates(gpu, Request(memory_mib=1)):
        m = profile_mask(c.profile, c.start)
        after = gpu.with_instances([*gpu.in_use(), Instance(c.profile.name, c.start, True)])
        drop = [b - a for b, a in zip(table.vector(fixed, counts),
                                      table.vector(fixed | m, in_use_counts(i.profile for i in after.in_use())),
                                      strict=True)]
        assert all(d >= 0 for d in drop)
        assert c.loss == table.loss(fixed, counts, c.profile.name, m) == sum(
            w * d for w, d in zip(table.weights, drop, strict=True))
        assert c.loss > 0  # every placement takes at least its own size class's room


@settings(max_examples=100, deadline=None)
@given(nodes(), requests(max_count=1), st.sampled_from(["config", "any"]))
def test_decide_takes_the_best_scored_candidate(gpus: list[GpuState], request: Request, mode: str) -> None:
    """best-fit: the minimum score over every GPU's candidates; hami/config: over every GPU's HAMi pick."""
    for policy in ("best-fit", "hami"):
        if policy == "hami" and mode == "any":
            continue
        d = decide(gpus, request, lookup, policy, mode)  # type: ignore[arg-type]
        pool: list[Candidate] = []
        for g in gpus:
            if mode == "any":
                pool += any_candidates(g, request)
            else:
                cands = config_candidates(g, request, lookup(g).geometries, first_only=policy == "hami")
                pool += cands[:1] if policy == "hami" else cands
        assert d.fits == bool(pool)
        if pool:
            best = min(pool, key=Candidate.score)
            (a,) = d.allocations
            assert (a.gpu_index, a.profile, a.start) == (best.gpu.index, best.profile.name, best.start)
