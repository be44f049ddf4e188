"""The demo's "why not the free ..." line gives the planner's own reason, with its own numbers."""

from __future__ import annotations

from dataclasses import replace

from hami_mig.demo.why import room_lost, why_not_reused
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.geometry import default_device_config, resolve_for_gpu
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance

MODEL = default_catalogue().lookup("A100-SXM4-80GB")


def gpu() -> GpuState:
    """1g.10gb in use at 0 and 4, a free one at 2: slice 1 is a hole no 2-slice instance can use."""
    return GpuState(0, "GPU-0", MODEL).with_instances(
        [Instance("1g.10gb", 0, True, "a"), Instance("1g.10gb", 2, False, "b"), Instance("1g.10gb", 4, True, "c")])


def test_best_fit_carves_in_the_hole_and_says_how_much_room_each_choice_takes() -> None:
    g = gpu()
    (allocation,) = decide([g], Request(1, memory_mib=8000), None, "best-fit", "any").allocations
    assert not allocation.reuse and (allocation.profile, allocation.start) == ("1g.10gb", 1)
    assert room_lost(g, "1g.10gb", 1) < room_lost(g, "1g.10gb", 2)
    line = why_not_reused([g], allocation, "best-fit")
    assert line is not None and line.startswith("why not the free 1g.10gb@2: ")
    assert f"takes {room_lost(g, '1g.10gb', 1)} slice(s)" in line and f"would take {room_lost(g, '1g.10gb', 2)}" in line


def test_hami_over_any_layout_is_not_explained_by_hamis_geometries() -> None:
    g = gpu()
    (allocation,) = decide([g], Request(1, memory_mib=8000), None, "hami", "any").allocations
    line = why_not_reused([g], allocation, "hami")
    assert line is None or "configured geometry" not in line


def test_hami_in_config_mode_names_its_geometry_and_slot() -> None:
    g = GpuState(0, "GPU-0", MODEL).with_instances([Instance("1g.10gb", 6, False, "b")])
    geos = resolve_for_gpu(default_device_config(), MODEL, default_catalogue())
    (allocation,) = decide([g], Request(1, memory_mib=15000), lambda _g: geos, "hami", "config").allocations
    assert why_not_reused([g], allocation, "hami") is None  # a 1g.20gb/2g.20gb: no free instance of its profile
    free_1g = why_not_reused([g], replace(allocation, profile="1g.10gb"), "hami")  # as if it made a 1g.10gb
    assert free_1g is not None and "HAMi's rule takes the first configured geometry" in free_1g
