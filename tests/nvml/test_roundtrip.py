"""Property tests: random legal target layouts and planner decisions applied on the simulator come out exactly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.request import Request
from hami_mig.mig.state import check_layout
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim

from .helpers import layout, ops_between

CAT = default_catalogue()
MODELS = [CAT.lookup(n) for n in ("A100-SXM4-40GB", "A100-SXM4-80GB", "H100-SXM5-80GB", "A30", "H200", "B200")]
Layout = list[tuple[str, int]]


@st.composite
def grow(draw: st.DrawFn, model: GpuModel, base: Layout, tries: int = 8) -> Layout:
    """`base` plus random legal insertions (placement, overlap, max count, one +me)."""
    out = list(base)
    for _ in range(draw(st.integers(0, tries))):
        p = draw(st.sampled_from(model.profiles))
        s = draw(st.sampled_from(p.starts))
        taken = {x for q, t in out for x in model.profile(q).slices(t)}
        count = sum(1 for q, _ in out if q == p.name)
        me = p.media_extension and any(model.profile(q).media_extension for q, _ in out)
        if taken & set(p.slices(s)) or count >= p.max_count or me:
            continue
        out.append((p.name, s))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[GpuModel, Layout, set[int], Layout, str]:
    model = draw(st.sampled_from(MODELS))
    initial = draw(grow(model, []))
    busy = {i for i in range(len(initial)) if draw(st.booleans())}
    keep = [x for i, x in enumerate(initial) if i in busy or draw(st.booleans())]
    target = draw(grow(model, keep))
    return model, initial, busy, target, draw(st.sampled_from(["heap", "lowest"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_apply_reaches_any_legal_target(scenario: tuple[GpuModel, Layout, set[int], Layout, str]) -> None:
    model, initial, busy, target, gi_ids = scenario
    sim = NvmlSim(f"{model.name}:1", gi_ids=gi_ids)
    uuids = {x: sim.add_instance(0, x[0], x[1], pids=[100 + i] if i in busy else []) for i, x in enumerate(initial)}
    backend = NvmlBackend(sim)
    backend.init()
    result = backend.apply(ops_between(0, initial, target))
    dev = backend.device(0)
    assert layout(dev) == set(target)
    for x in set(initial) & set(target):  # kept instances, busy ones included, are the very same devices
        hw = dev.find(*x)
        assert hw is not None and hw.mig_uuid == uuids[x]
    for step in result.created:
        hw = dev.find(step.op.profile, step.op.start)
        assert hw is not None and step.instance is not None and hw.mig_uuid == step.instance.mig_uuid
        assert hw.gi_id == step.instance.gi_id and hw.standard
    state = dev.to_gpu_state()
    check_layout(state.model, state.instances)
    assert {i.key() for i in state.in_use()} == {x for i, x in enumerate(initial) if i in busy}


try:
    from hami_mig.mig.planner import decide
except ImportError:  # the planner is optional for this module
    decide = None  # type: ignore[assignment]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MODELS), st.lists(st.integers(1, 100), min_size=1, max_size=8), st.data())
def test_planner_decisions_apply_cleanly_admission_after_admission(
        model: GpuModel, percents: list[int], data: st.DataObject) -> None:
    if decide is None:
        return
    sim = NvmlSim(f"{model.name}:2")
    initial = data.draw(grow(model, []))
    for n, (p, s) in enumerate(initial):
        sim.add_instance(n % 2, p, s, pids=[7] if n % 3 == 0 else [])
    backend = NvmlBackend(sim)
    backend.init()
    held: set[str] = set()
    for pct in percents:
        before = {d.index: d for d in backend.devices()}
        busy_before = {(d.index, hw.mig_uuid) for d in before.values() for hw in d.instances
                       if hw.busy or hw.mig_uuid in held}
        decision = decide(list(backend.states(held).values()), Request(memory_percent=pct), mode="any")
        if not decision.fits:
            continue
        backend.apply(decision.operations)
        after = {d.index: d for d in backend.devices()}
        for a in decision.allocations:
            hw = after[a.gpu_index].find(a.profile, a.start)
            assert hw is not None and hw.mig_uuid
            held.add(hw.mig_uuid)
        still = {(d.index, hw.mig_uuid) for d in after.values() for hw in d.instances}
        assert busy_before <= still  # nothing in use was touched
