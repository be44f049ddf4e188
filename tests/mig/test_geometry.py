"""HAMi device-config parsing, validation against the hardware, and per-GPU resolution."""

from __future__ import annotations

import contextlib

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.geometry import (
    default_device_config,
    dump_device_config,
    parse_device_config,
    resolve_for_gpu,
    validate_device_config,
)

CAT = default_catalogue()

HAMI_EXAMPLE = """
nvidia:
  resourceCountName: nvidia.com/gpu
  resourceMemoryName: nvidia.com/gpumem
  resourceMemoryPercentageName: nvidia.com/gpumem-percentage
  resourceCoreName: nvidia.com/gpucores
  resourcePriorityName: nvidia.com/priority
  overwriteEnv: false
  deviceMemoryScaling: 1
  deviceCoreScaling: 1
  migstrategy: none
  deviceSplitCount: 10
  defaultMemory: 0
  defaultCores: 0
  defaultGPUNum: 1
  knownMigGeometries:
  - models: ["A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB"]
    allowedGeometries:
    - [ {name: 1g.5gb, memory: 5120, count: 7, core: 14} ]
    - [ {name: 1g.5gb, memory: 5120, count: 1, core: 14}, {name: 2g.10gb, memory: 10240, count: 3, core: 28} ]
    - [ {name: 3g.20gb, memory: 20480, count: 2, core: 42} ]
    - [ {name: 7g.40gb, memory: 40960, count: 1, core: 100} ]
cambricon:
  resourceCountName: cambricon.com/vmlu
"""


def test_parses_hami_file_unchanged_and_tolerates_other_keys() -> None:
    cfg = parse_device_config(HAMI_EXAMPLE)
    assert cfg.device_split_count == 10
    assert cfg.rules[0].models == ("A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB")
    assert [g.describe() for g in cfg.rules[0].geometries] == [
        "7x 1g.5gb", "1x 1g.5gb + 3x 2g.10gb", "2x 3g.20gb", "1x 7g.40gb"]
    assert [e.name for e in cfg.rules[0].geometries[1].slots] == ["1g.5gb", "2g.10gb", "2g.10gb", "2g.10gb"]


def test_default_table_has_no_errors_only_nominal_warnings() -> None:
    findings = validate_device_config(default_device_config(), CAT)
    assert not [f for f in findings if f.level == "error"]
    warn = [f.message for f in findings if f.level == "warning"]
    assert any("1g.5gb: nominal memory 5120 MiB exceeds the real 4864 MiB" in w for w in warn)
    # the A100-80GB row uses real memories (HAMi v2.9): nothing to warn about
    assert not any("A100-SXM4-80GB" in w for w in warn)
    info = [f.message for f in findings if f.level == "info"]
    assert any("H100-SXM5-94GB" in i for i in info)


def test_default_round_trips_through_yaml() -> None:
    cfg = default_device_config()
    assert parse_device_config(dump_device_config(cfg)) == cfg


def _one_rule(model: str, geometry: str) -> str:
    return f"nvidia:\n  knownMigGeometries:\n  - models: [{model}]\n    allowedGeometries:\n    - {geometry}\n"


@pytest.mark.parametrize(
    ("geometry", "expected"),
    [
        ("[ {name: 3g.20gb, memory: 20480, count: 3} ]",
         "knownMigGeometries[0].allowedGeometries[0] for A100-SXM4-40GB: 3x 3g.20gb exceeds the hardware maximum of 2"),
        ("[ {name: 4g.20gb, memory: 20480, count: 1}, {name: 3g.20gb, memory: 20480, count: 2} ]",
         "needs 12 memory slices, the GPU has 8"),
        ("[ {name: 7g.39gb, memory: 40000, count: 1} ]", "nearest real profile: 7g.40gb"),
        ("[ {name: 4g.20gb, memory: 20096, count: 1}, {name: 2g.10gb, memory: 9984, count: 2} ]",
         "has no non-overlapping placement"),
    ],
)
def test_invalid_geometries_are_named(geometry: str, expected: str) -> None:
    cfg = parse_device_config(_one_rule("A100-SXM4-40GB", geometry))
    errors = [f.message for f in validate_device_config(cfg, CAT) if f.level == "error"]
    assert errors, "expected an error"
    assert expected in errors[0]
    assert "knownMigGeometries[0].allowedGeometries[0] for A100-SXM4-40GB" in errors[0]


def test_agent_skips_invalid_geometry_and_keeps_valid_ones() -> None:
    text = (
        "nvidia:\n  knownMigGeometries:\n  - models: [A100-SXM4-80GB]\n    allowedGeometries:\n"
        "    - [ {name: 7g.79gb, memory: 80000, count: 1} ]\n"
        "    - [ {name: 3g.40gb, memory: 40192, count: 2} ]\n"
    )
    geos = resolve_for_gpu(parse_device_config(text), CAT.lookup("NVIDIA A100-SXM4-80GB"), CAT)
    assert [g.index for g in geos.geometries] == [1]
    assert "7g.80gb" in geos.skipped[0]


@pytest.mark.parametrize(
    ("gpu", "rule", "matched"),
    [
        ("NVIDIA H200", 6, "H200-SXM5"),  # HAMi's substring match would give it the H20 row
        ("NVIDIA H20", 5, "H20"),
        ("NVIDIA H100 80GB HBM3", 3, "H100-SXM5-80GB"),  # dash-spelled: HAMi finds nothing
        ("NVIDIA A100 80GB PCIe", 2, "A100-80GB-PCIe"),
        ("NVIDIA GH200 480GB", 5, "H100 on GH200"),
    ],
)
def test_models_match_exactly_not_by_substring(gpu: str, rule: int, matched: str) -> None:
    geos = resolve_for_gpu(default_device_config(), CAT.lookup(gpu), CAT)
    assert (geos.rule, geos.matched_model) == (rule, matched)
    assert len(geos.geometries) == 4


def test_unknown_gpu_gets_no_geometry() -> None:
    geos = resolve_for_gpu(default_device_config(), CAT.lookup("NVIDIA GB200"), CAT)
    assert geos.geometries == () and geos.rule is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("nvidia: [1, 2]", "nvidia"),
        ("nvidia:\n  knownMigGeometries: 3", "nvidia.knownMigGeometries"),
        ("nvidia:\n  knownMigGeometries:\n  - models: []\n    allowedGeometries: [[{name: a, memory: 1, count: 1}]]",
         "knownMigGeometries[0].models"),
        ("nvidia:\n  knownMigGeometries:\n  - models: [A30]\n    allowedGeometries: [[{name: 1g.6gb, count: 1}]]",
         "knownMigGeometries[0].allowedGeometries[0][0].memory"),
        ("nvidia:\n  knownMigGeometries:\n  - models: [A30]\n"
         "    allowedGeometries: [[{name: 1g.6gb, memory: -1, count: 1}]]",
         "knownMigGeometries[0].allowedGeometries[0][0].memory"),
        ("nvidia:\n  deviceSplitCount: zero", "nvidia.deviceSplitCount"),
        ("nvidia: {a: [", "device-config.yaml"),
    ],
)
def test_bad_config_names_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as err:
        parse_device_config(text)
    assert err.value.field == field


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=12,
))
def test_any_yaml_document_parses_or_raises_input_error(doc: object) -> None:
    text = yaml.safe_dump({"nvidia": {"knownMigGeometries": doc}})
    with contextlib.suppress(InputError):
        parse_device_config(text)
