"""The explanation module: the same decision as the planner, with reasons that name what would be needed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.explain import explain, failure_reason, needs
from hami_mig.mig.geometry import GpuGeometries, default_device_config, parse_device_config, resolve_for_gpu
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance

CAT = default_catalogue()
A80 = CAT.lookup("NVIDIA A100-SXM4-80GB")
CONFIG = default_device_config()


def geos(g: GpuState) -> GpuGeometries:
    return resolve_for_gpu(CONFIG, g.model, CAT)


def gpu(index: int = 0, *instances: Instance) -> GpuState:
    return GpuState(index, f"GPU-{index}", A80).with_instances(instances)


def test_needs_in_words() -> None:
    assert needs(Request(memory_mib=100), A80) == "needs 100 MiB"
    assert needs(Request(memory_percent=50), A80) == "needs 50% of the GPU's memory (40960 MiB)"
    assert needs(Request(), A80) == "needs a whole GPU (7g.80gb (80896 MiB))"
    assert needs(Request(memory_mib=100, cores=50), A80) == "needs 100 MiB and >= 50% of the SMs"


def test_count_above_gpus_and_partial_fit() -> None:
    assert "the node has 1 GPU" in failure_reason([gpu()], Request(count=2, memory_mib=1), geos)
    busy = gpu(1, Instance("7g.80gb", 0, True))
    reason = failure_reason([gpu(0), busy], Request(count=2, memory_mib=1000), geos)
    assert "only 1 of 2 GPUs can host it" in reason
    assert "nothing can be placed on GPU 1 (GPU-1) because 7g.80gb@0 is in use" in reason


def test_too_big_and_cores() -> None:
    assert "the largest profile is 7g.80gb (80896 MiB)" in failure_reason([gpu()], Request(memory_mib=90000), geos)
    reason = failure_reason([gpu(0, Instance("1g.10gb", 0, True))], Request(memory_mib=9000, cores=90), None, "any")
    assert reason.endswith("needs 9000 MiB and >= 90% of the SMs; largest placeable profile on GPU 0 (GPU-0) is "
                           "3g.40gb (40192 MiB) because 1g.10gb@0 is in use")


def test_no_geometry_entry_and_skipped_geometries_are_explained() -> None:
    config = parse_device_config("nvidia:\n  knownMigGeometries:\n  - models: [A100-SXM4-80GB]\n"
                                 "    allowedGeometries:\n    - [{name: 7g.79gb, memory: 80000, count: 1}]\n"
                                 "    - [{name: 7g.80gb, memory: 80896, count: 1}]\n")
    lookup = lambda g: resolve_for_gpu(config, g.model, CAT)  # noqa: E731
    e = explain([gpu()], Request(memory_mib=1000), lookup)
    labels = [(v.label, v.accepted) for v in e.gpus[0].verdicts]
    assert labels == [("geometry 0", False), ("geometry 1 (1x 7g.80gb)", True)]
    assert e.gpus[0].verdicts[0].reason.startswith("invalid for this GPU: ")
    none = parse_device_config("nvidia:\n  knownMigGeometries:\n  - models: [H100-SXM5-80GB]\n"
                               "    allowedGeometries:\n    - [{name: 7g.80gb, memory: 80000, count: 1}]\n")
    reason = failure_reason([gpu()], Request(memory_mib=1000), lambda g: resolve_for_gpu(none, g.model, CAT))
    assert "no knownMigGeometries entry matches NVIDIA A100-SXM4-80GB" in reason


layouts = st.lists(st.sampled_from([("1g.10gb", s) for s in range(7)] + [("2g.20gb", s) for s in (0, 2, 4)]
                                   + [("3g.40gb", s) for s in (0, 4)]), max_size=4, unique=True)


@settings(max_examples=60, deadline=None)
@given(layouts, st.integers(1, 90000), st.sampled_from(["hami", "best-fit"]), st.sampled_from(["config", "any"]),
       st.booleans())
def test_explanation_agrees_with_the_planner(layout: list[tuple[str, int]], mem: int, policy: str, mode: str,
                                             busy: bool) -> None:
    taken: set[int] = set()
    instances = []
    for name, start in layout:
        slices = set(A80.profile(name).slices(start))
        if slices & taken:
            continue
        taken |= slices
        instances.append(Instance(name, start, busy))
    g = gpu(0, *instances)
    request = Request(memory_mib=mem)
    e = explain([g], request, geos, policy, mode)  # type: ignore[arg-type]
    d = decide([g], request, geos, policy=policy, mode=mode)  # type: ignore[arg-type]
    assert e.decision == d
    assert bool(e.gpus[0].chosen) == d.fits
    assert any(v.accepted for v in e.gpus[0].verdicts) == d.fits
    assert (e.reason == "") == d.fits
    if not d.fits:
        assert e.gpus[0].failure and e.gpus[0].failure in e.reason
