"""Default GetPreferredAllocation policy: valid answers always, packing onto fewest groups, then NUMA nodes."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from hami_mig.plugin import Device
from hami_mig.plugin.preferred import choose_preferred, is_valid_preference, natural_key


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Device], list[str], list[str], int]:
    """A few groups (GPUs, each on one NUMA node) of devices, some available, some must-include."""
    group_count = draw(st.integers(1, 4))
    devices: dict[str, Device] = {}
    for g in range(group_count):
        numa = draw(st.sampled_from([None, 0, 1]))
        for i in range(draw(st.integers(1, 4))):
            device = Device(f"g{g}-d{i}", numa_node=numa, group=f"gpu{g}" if draw(st.booleans()) or i else "")
            devices[device.id] = device
    ids = sorted(devices)
    available = draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
    must = draw(st.lists(st.sampled_from(available), unique=True, max_size=len(available)))
    size = draw(st.integers(len(must), len(available)).filter(lambda s: s > 0))
    return devices, draw(st.permutations(available)), must, size


def groups_of(ids: list[str] | tuple[str, ...], devices: dict[str, Device]) -> set[str]:
    return {devices[i].group or f"solo:{i}" for i in ids}


def numa_of(ids: list[str] | tuple[str, ...], devices: dict[str, Device]) -> set[int]:
    return {n for i in ids if (n := devices[i].numa_node) is not None}


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_answer_is_exactly_size_distinct_available_ids_with_must_include(
        scenario: tuple[dict[str, Device], list[str], list[str], int]) -> None:
    devices, available, must, size = scenario
    result = choose_preferred(available, must, size, devices)
    assert len(result) == size
    assert len(set(result)) == size
    assert set(must) <= set(result) <= set(available)
    assert is_valid_preference(result, available, must, size)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_packs_onto_fewest_groups_then_fewest_numa_nodes(
        scenario: tuple[dict[str, Device], list[str], list[str], int]) -> None:
    devices, available, must, size = scenario
    result = choose_preferred(available, must, size, devices)
    rest = [i for i in available if i not in must]
    best = min(
        (len(groups_of(chosen, devices)), len(numa_of(chosen, devices)))
        for extra in combinations(rest, size - len(must))
        for chosen in [tuple(must) + extra]
    )
    assert (len(groups_of(result, devices)), len(numa_of(result, devices))) == best


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_deterministic_whatever_the_input_order(scenario: tuple[dict[str, Device], list[str], list[str], int]) -> None:
    devices, available, must, size = scenario
    assert choose_preferred(available, must, size, devices) == choose_preferred(
        sorted(available), list(reversed(must)), size, devices)


def test_prefers_the_tightest_fitting_gpu() -> None:
    devices = {d.id: d for d in [Device(f"a{i}", group="A") for i in range(7)] +
               [Device(f"b{i}", group="B") for i in range(2)] + [Device("c0", group="C")]}
    assert sorted(choose_preferred(list(devices), [], 2, devices)) == ["b0", "b1"]
    # must-include pins a GPU; the rest is taken from it before touching another.
    assert sorted(choose_preferred(list(devices), ["a3"], 3, devices), key=natural_key) == ["a0", "a1", "a3"]


def test_prefers_one_numa_node_when_group_counts_tie() -> None:
    devices = {d.id: d for d in [Device("x0", group="X", numa_node=1), Device("y0", group="Y", numa_node=0),
                                 Device("z0", group="Z", numa_node=1)]}
    assert sorted(choose_preferred(["x0", "y0", "z0"], [], 2, devices)) == ["x0", "z0"]


def test_unknown_ids_are_treated_as_lone_devices() -> None:
    assert sorted(choose_preferred(["u1", "u2", "u3"], ["u2"], 2, {})) == ["u1", "u2"]


def test_inconsistent_requests_get_no_preference_instead_of_an_error() -> None:
    devices = {f"d{i}": Device(f"d{i}") for i in range(3)}
    assert choose_preferred(["d0", "d1"], [], 3, devices) == []      # more than available
    assert choose_preferred(["d0", "d1"], ["d2"], 2, devices) == []  # must-include not available
    assert choose_preferred(["d0", "d1"], ["d0", "d1"], 1, devices) == []  # must-include exceeds size
    assert choose_preferred(["d0"], [], 0, devices) == []
    assert choose_preferred(["d0"], [], -1, devices) == []
    assert choose_preferred(["d0", "d0", "d1"], [], 2, devices) == ["d0", "d1"]  # duplicates collapse


def test_natural_order() -> None:
    assert sorted(["gpu-10", "gpu-2", "gpu-1"], key=natural_key) == ["gpu-1", "gpu-2", "gpu-10"]
