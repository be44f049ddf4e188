"""Hypothesis strategies for legal GPU states and requests, shared by the planner tests."""

from __future__ import annotations

from hypothesis import strategies as st

from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.layout import for_model, profile_mask
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance

CAT = default_catalogue()
MODELS = [CAT.lookup(n) for n in (
    "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA A30", "NVIDIA H200")]


@st.composite
def gpu_states(draw: st.DrawFn, model: GpuModel | None = None, index: int = 0) -> GpuState:
    """A legal layout built by random legal insertions, each instance randomly in use or free."""
    m = model or draw(st.sampled_from(MODELS))
    lay = for_model(m)
    occupied = 0
    instances: list[Instance] = []
    counts: dict[str, int] = {}
    for _ in range(draw(st.integers(0, 8))):
        p = draw(st.sampled_from(m.plannable))
        starts = lay.free_starts(p.name, occupied)
        if not starts or counts.get(p.name, 0) >= p.max_count:
            continue
        s = draw(st.sampled_from(starts))
        occupied |= profile_mask(p, s)
        counts[p.name] = counts.get(p.name, 0) + 1
        instances.append(Instance(p.name, s, draw(st.booleans()), f"MIG-{index}-{p.name}-{s}"))
    return GpuState(index, f"GPU-{index}", m).with_instances(instances)


@st.composite
def nodes(draw: st.DrawFn, max_gpus: int = 4) -> list[GpuState]:
    model = draw(st.sampled_from(MODELS))
    n = draw(st.integers(1, max_gpus))
    return [draw(gpu_states(model, i)) for i in range(n)]


@st.composite
def requests(draw: st.DrawFn, max_count: int = 2) -> Request:
    count = draw(st.integers(1, max_count))
    kind = draw(st.sampled_from(["mib", "pct", "whole"]))
    cores = draw(st.none() | st.integers(0, 100))
    if kind == "mib":
        return Request(count, memory_mib=draw(st.integers(1, 150000)), cores=cores)
    if kind == "pct":
        return Request(count, memory_percent=draw(st.integers(1, 100)), cores=cores)
    return Request(count, cores=cores)
