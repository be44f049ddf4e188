"""The DRA model's counters and NVIDIA's first fit (benchmarks/packing_sim/dra.py), checked by hand.

Expected names and orders come from NVIDIA's k8s-dra-driver-gpu v25.12.0, cmd/gpu-kubelet-plugin:
`MigSpecTuple.ToCanonicalName` (mig.go) formats `gpu-%d-mig-%s-%d-%d`; the example device
`gpu-1-mig-2g47gb-14-0` is quoted in a comment of `DeviceState.Unprepare` (device_state.go);
`generateCombinedResourceSlices` (driver.go) lists a GPU's devices in `slices.Sorted` (bytewise) order.
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.packing_sim.dra import (
    Allocated,
    CounterSet,
    Device,
    DraFirstFit,
    canonical_name,
    first_fit,
    nvidia_devices,
)
from benchmarks.packing_sim.sim import simulate
from benchmarks.packing_sim.workload import Pod, TraceSpec, generate
from hami_mig.mig.catalogue import default_catalogue

CAT = default_catalogue()
A80 = CAT.lookup("A100-SXM4-80GB")
A40 = CAT.lookup("A100-SXM4-40GB")


def test_canonical_name_matches_nvidia_format() -> None:
    two_g = replace(A80.profile("2g.20gb"), name="2g.47gb")  # GI profile id 14, as on every MIG GPU
    assert canonical_name(1, two_g, 0) == "gpu-1-mig-2g47gb-14-0"
    assert canonical_name(0, A80.profile("1g.10gb"), 3) == "gpu-0-mig-1g10gb-19-3"
    # '+' is outside [a-z0-9-.] and becomes '-' (toRFC1123Compliant)
    assert canonical_name(7, A80.profile("1g.10gb+me"), 6) == "gpu-7-mig-1g10gb-me-20-6"


def test_nvidia_order_on_an_a100_80gb() -> None:
    got = [(d.profile.name, d.start) for d in nvidia_devices(A80, 0)]
    want = ([("1g.10gb", s) for s in range(7)] + [("1g.10gb+me", s) for s in range(7)]
            + [("1g.20gb", s) for s in (0, 2, 4, 6)] + [("2g.20gb", s) for s in (0, 2, 4)]
            + [("3g.40gb", 0), ("3g.40gb", 4), ("4g.40gb", 0), ("7g.80gb", 0)])
    assert got == want
    names = [d.name for d in nvidia_devices(A80, 0)]
    assert names == sorted(names)


def test_nvidia_order_puts_the_larger_1g_first_on_an_a100_40gb() -> None:
    order = [d.profile.name for d in nvidia_devices(A40, 0)]
    # "1g10gb" < "1g5gb" bytewise: 1g.10gb (2 memory slices) is listed before 1g.5gb
    assert order.index("1g.10gb") < order.index("1g.5gb")
    scheme = DraFirstFit("dra", A40, 2)
    admission = scheme.admit(Pod(0, 0.0, 1.0, 4000))
    assert admission is not None and (admission.gpu, admission.profile) == (0, "1g.10gb")


def test_first_fit_by_hand_on_two_gpus() -> None:
    scheme = DraFirstFit("dra", A80, 2)
    got = []
    for i, mem in enumerate([5000, 15000, 30000, 70000, 30000, 9000]):
        a = scheme.admit(Pod(i, float(i), 100.0, mem))
        got.append((a.gpu, a.profile, a.slices, a.ops) if a else None)
    assert got == [
        (0, "1g.10gb", 1, 2),  # GPU 0's first device
        (0, "1g.20gb", 2, 2),  # 1g.20gb sorts before 2g.20gb; @0 overlaps the 1g, @2 is free
        (0, "3g.40gb", 4, 2),  # 3g@0 overlaps, 3g@4 fits
        (1, "7g.80gb", 8, 2),  # GPU 0 is not empty
        None,  # no 3g/4g/7g placement left on either GPU
        (0, "1g.10gb", 1, 2),  # memory slice 1 is still free on GPU 0
    ]
    assert scheme.in_use() == [[("1g.10gb", 0), ("1g.10gb", 1), ("1g.20gb", 2), ("3g.40gb", 4)],
                               [("7g.80gb", 0)]]
    scheme.release(Pod(3, 3.0, 100.0, 70000))
    a = scheme.admit(Pod(9, 9.0, 1.0, 9000))
    assert a is not None and (a.gpu, a.profile) == (1, "1g.10gb")


def test_counters_hold_one_media_extension_per_gpu() -> None:
    counters = CounterSet(A80)
    me = A80.profile("1g.10gb+me")
    counters.consume(Device(0, me, 0, canonical_name(0, me, 0)))
    assert not counters.fits(Device(0, me, 3, canonical_name(0, me, 3)))  # media counter exhausted
    assert counters.fits(Device(0, A80.profile("1g.10gb"), 3, "x"))
    assert not counters.fits(Device(0, A80.profile("2g.20gb"), 0, "y"))  # memory-slice 0 is taken


def test_allocator_skips_allocated_and_overlapping_devices_in_list_order() -> None:
    allocated = Allocated(A80, 1)
    devices = nvidia_devices(A80, 0)
    first = first_fit(devices, 1, allocated)
    assert first is not None and first.name == "gpu-0-mig-1g10gb-19-0"
    allocated.take(first)
    second = first_fit(devices, 1, allocated)
    assert second is not None and second.name == "gpu-0-mig-1g10gb-19-1"
    assert first_fit(devices, A80.largest.memory_mib, allocated) is None  # 7g overlaps slice 0


def test_random_slice_order_changes_the_gpu_not_the_verdict() -> None:
    pods = generate(TraceSpec(A80.name, 4, "uniform", 1.2, 300, seed=5, warmup=0.5), A80)
    ordered = DraFirstFit("index", A80, 4)
    shuffled = DraFirstFit("random", A80, 4, "random", seed=3)
    gpus_seen: set[int] = set()
    for pod in sorted(pods, key=lambda p: p.arrival)[:40]:  # no departures yet: compare on equal footing
        # both walks see the same allocated state when we mirror the index walk's choice into the other
        pick = first_fit(ordered.walk(), pod.gpumem, ordered.allocated)
        other = first_fit(shuffled.walk(), pod.gpumem, ordered.allocated)
        assert (pick is None) == (other is None)
        if pick is not None:
            ordered.allocated.take(pick)
            gpus_seen.add(other.gpu if other else -1)
    assert len(gpus_seen) > 1
    again = DraFirstFit("random", A80, 4, "random", seed=3)
    r1 = simulate(DraFirstFit("random", A80, 4, "random", seed=3), pods, A80, 4, classify=False)
    r2 = simulate(again, pods, A80, 4, classify=False)
    assert [o.admission for o in r1.outcomes] == [o.admission for o in r2.outcomes]
