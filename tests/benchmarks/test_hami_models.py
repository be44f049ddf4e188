"""The HAMi baselines against HAMi's own Go test cases, and the whole-GPU validation trace.

Expected values come from HAMi's source and tests, not from the models:
- v2.9.0 `pkg/device/nvidia/device_test.go`: `TestDevices_AddResourceUsage` (the idle-GPU template
  choice and the slot it marks), `TestCustomFilterRule_MigEmptyUsageWithTemplate`,
  `TestCustomFilterRule_MigEmptyUsageNoFitTemplate`, `TestDevices_Fit` ("fit success": of two equal
  devices `dev-1`, the last, is chosen);
- v2.9.0 `pkg/device/nvidia/device.go` `CustomFilterRule`: `Memory >= request.Memreq` (since commit
  ad5fb7a8 "Mig supports applying for the same Mem"; v2.6.0 has `Memory > request.Memreq` and
  compares only `templates[0].Memory`);
- v2.10.0 `pkg/device/nvidia/mig_topology_test.go` `TestSelectMigPlacementUsesBalancedPacking`.
"""

from __future__ import annotations

import pytest

from benchmarks.packing_sim.hami_order import DeviceUsage, visit_order
from benchmarks.packing_sim.hami_v29 import HamiGeometries
from benchmarks.packing_sim.hami_v210 import HamiV210, allowlist_profiles, candidate_order
from benchmarks.packing_sim.schemes import all_entries, dynamic_entries, geometries
from benchmarks.packing_sim.sim import simulate
from benchmarks.packing_sim.workload import Pod
from hami_mig.mig.catalogue import GpuModel, default_catalogue
from hami_mig.mig.geometry import DeviceConfig, Geometry, GeometryEntry, GeometryRule, GpuGeometries, resolve_for_gpu

CAT = default_catalogue()
A40 = CAT.lookup("A100-SXM4-40GB")
A80 = CAT.lookup("A100-SXM4-80GB")


def templates(model: GpuModel, *geos: tuple[tuple[int, str, int, int], ...]) -> GpuGeometries:
    """A device config holding exactly these templates, (count, name, memory, core) per entry."""
    entries = [Geometry(tuple(GeometryEntry(name, memory, count, core) for count, name, memory, core in g))
               for g in geos]
    config = DeviceConfig(rules=(GeometryRule((model.name,), tuple(entries)),))
    resolved = resolve_for_gpu(config, model, CAT)
    assert len(resolved.geometries) == len(geos), resolved.skipped
    return resolved


def first_pod(scheme: HamiGeometries, gpumem: int) -> tuple[int, int] | None:
    """(template, flattened slot) that the scheme gives one pod on an idle GPU, or None."""
    if scheme.admit(Pod(0, 0.0, 1.0, gpumem)) is None:
        return None
    gpu, slot = scheme.holder[0]
    geo = scheme.gpus[gpu].geometry
    assert geo is not None
    return geo, slot


# TestDevices_AddResourceUsage (v2.9.0): MigTemplate, Usedmem, wanted UUID suffix [template-entry]
# (the entry's first slot is marked in use: UsageList index = sum of the counts before the entry).
# "1g.3gb" is not a profile of any GPU; HAMi compares only `Memory`, so a real 1g.5gb with the
# test's 3072 MiB stands in for it.
ADD_RESOURCE_USAGE = [
    ("first template matches", [((1, "1g.5gb", 5120, 25),), ((1, "1g.5gb", 5120, 25), (1, "2g.10gb", 10240, 50))],
     6000, (1, 1)),
    ("second template matches with correct idx",
     [((1, "1g.5gb", 3072, 25),), ((1, "1g.5gb", 5120, 25), (1, "2g.10gb", 10240, 50))], 8000, (1, 1)),
    ("verify outer loop break", [((1, "1g.5gb", 5120, 25), (1, "2g.10gb", 10240, 50)), ((1, "3g.20gb", 20480, 100),)],
     6000, (0, 1)),
    ("template with Count > 1", [((2, "1g.5gb", 5120, 50), (1, "2g.10gb", 10240, 100))], 8000, (0, 2)),
]


@pytest.mark.parametrize(("case", "geos", "gpumem", "want"), ADD_RESOURCE_USAGE, ids=[c[0] for c in ADD_RESOURCE_USAGE])
def test_v29_idle_gpu_template_choice_matches_hami_tests(
    case: str, geos: list[tuple[tuple[int, str, int, int], ...]], gpumem: int, want: tuple[int, int]
) -> None:
    scheme = HamiGeometries("HAMi v2.9", A40, 1, templates(A40, *geos))
    assert first_pod(scheme, gpumem) == want


def test_v26_compares_only_the_first_entry() -> None:
    # "verify outer loop break": v2.9 takes template 0 (its 2nd entry covers 6000); v2.6 skips it
    geos = templates(A40, ((1, "1g.5gb", 5120, 25), (1, "2g.10gb", 10240, 50)), ((1, "3g.20gb", 20480, 100),))
    scheme = HamiGeometries("HAMi <= v2.6", A40, 1, geos, first_entry=True, strict=True)
    assert first_pod(scheme, 6000) == (1, 0)


def test_slot_memory_equal_to_the_request_fits_in_v29_not_in_v26() -> None:
    geos = templates(A40, ((2, "1g.5gb", 5120, 14),))
    # TestCustomFilterRule_MigEmptyUsageWithTemplate: 4096 MiB into a 5120 slot fits
    assert first_pod(HamiGeometries("v2.9", A40, 1, geos), 4096) == (0, 0)
    # `>=` since v2.7: a request of exactly the slot's memory fits; v2.6's `>` refuses it
    assert first_pod(HamiGeometries("v2.9", A40, 1, geos), 5120) == (0, 0)
    assert first_pod(HamiGeometries("v2.6", A40, 1, geos, first_entry=True, strict=True), 5120) is None


def test_no_template_fits() -> None:
    # TestCustomFilterRule_MigEmptyUsageNoFitTemplate: one template of 100 MiB, 4096 asked
    assert first_pod(HamiGeometries("v2.9", A40, 1, templates(A40, ((1, "1g.5gb", 100, 14),))), 4096) is None


def test_busy_gpu_keeps_its_template_until_idle() -> None:
    scheme = HamiGeometries("HAMi v2.9", A80, 1, geometries(A80))
    assert scheme.admit(Pod(0, 0.0, 1.0, 5000)) is not None  # 7x 1g
    assert scheme.admit(Pod(1, 0.0, 1.0, 15000)) is None  # needs 1x 1g + 3x 2g: locked out
    scheme.release(Pod(0, 0.0, 1.0, 5000))
    got = scheme.admit(Pod(2, 1.0, 1.0, 15000))
    # idle again: mig-parted reconfigures 7x 1g -> 1x 1g + 3x 2g (7 destroys + 4 creates)
    assert got is not None and (got.profile, got.ops) == ("2g.20gb", 11)


def test_fit_walks_the_sorted_device_list_from_its_end() -> None:
    idle = DeviceUsage(0, 10, 0, 100, 0, 81920)
    busy = DeviceUsage(2, 10, 28, 100, 19456, 81920)
    # TestDevices_Fit "fit success": two equal devices, dev-1 is chosen
    assert visit_order([idle, idle], "spread")[0] == 1
    assert visit_order([idle, idle], "binpack")[0] == 1
    assert visit_order([busy, idle, busy], "spread") == [1, 2, 0]  # least used first
    assert visit_order([busy, idle, busy], "binpack") == [2, 0, 1]  # most used first
    assert visit_order([busy, idle, busy], "index") == [0, 1, 2]


def test_v210_placements_match_hami_balanced_packing_test() -> None:
    # TestSelectMigPlacementUsesBalancedPacking: 3g -> 4, 2g -> 0, 1g -> 3, 1g -> 2 (A100-40GB profiles)
    profiles = tuple(A40.profile(n) for n in ("1g.5gb", "2g.10gb", "3g.20gb"))
    scheme = HamiV210("HAMi v2.10", A40, 1, profiles=profiles)
    got = []
    for i, mem in enumerate((20000, 9000, 4000, 4000)):
        a = scheme.admit(Pod(i, 0.0, 1.0, mem))
        assert a is not None
        got.append((a.profile, scheme.held[0][i][1]))
    assert got == [("3g.20gb", 4), ("2g.10gb", 0), ("1g.5gb", 3), ("1g.5gb", 2)]


def test_v210_profiles_and_order_follow_the_chart_allowlist() -> None:
    # device-configmap.yaml: A100-SXM4-80GB -> 1g.10gb, 2g.20gb, 3g.40gb, 7g.79gb (7g keyed by "7g")
    assert [p.name for p in candidate_order(allowlist_profiles(A80))] == ["1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb"]


def test_v210_creates_per_pod_and_destroys_at_the_end() -> None:
    scheme = HamiV210("HAMi v2.10", A80, 1)
    first = scheme.admit(Pod(0, 0.0, 1.0, 5000))
    assert first is not None and first.profile == "1g.10gb" and first.ops == 2
    assert scheme.held[0][0][1] == 6  # 1g.* highest start first
    scheme.release(Pod(0, 0.0, 1.0, 5000))
    again = scheme.admit(Pod(1, 2.0, 1.0, 5000))
    assert again is not None and again.ops == 2 and scheme.held[0][1][1] == 6  # created again, not reused


def test_whole_gpu_trace_admits_identically_in_every_dynamic_scheme() -> None:
    """Every pod asks exactly a whole GPU: any dynamic scheme admits one exactly when a GPU is empty."""
    whole = A80.largest.memory_mib
    pods = [Pod(i, 0.3 * i, 1.0 + (i % 3) * 0.7, whole) for i in range(40)]
    outcomes: dict[str, list[bool]] = {}
    for entry in dynamic_entries(A80, 2, orders=True):
        result = simulate(entry.build(), pods, A80, 2)
        outcomes[entry.name] = [o.admission is not None for o in result.outcomes]
    v26 = outcomes.pop("HAMi <= v2.6")
    assert not any(v26)  # `Memory > Memreq`: 80896 is not strictly greater than 80896
    reference = outcomes["re-pack oracle"]
    assert 0 < sum(reference) < len(pods)
    assert {name: got == reference for name, got in outcomes.items()} == {name: True for name in outcomes}


def test_every_scheme_is_registered_once() -> None:
    names = [e.name for e in all_entries(A80, 8, orders=True)]
    assert len(names) == len(set(names))
    assert {"HAMi <= v2.6", "HAMi v2.9", "HAMi v2.10", "HAMi v2.9 (spread)", "HAMi v2.10 (binpack)"} <= set(names)


def test_quick_run_prints_the_gain_over_both_hami_releases(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.packing import main

    assert main(["--quick", "--pods", "300", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("scheme") and "gain vs HAMi v2.9 %" in line)
    assert "gain vs HAMi v2.10 %" in header
    row = next(line for line in out.splitlines() if line.startswith("HAMi v2.9 "))
    assert "+0.0 / +0.0" in row  # the baseline against itself
    assert "best-fit/any: more pods and memory than HAMi v2.10" in out
