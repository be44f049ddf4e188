"""Unknown device-config keys are named with the nearest valid one; every key HAMi reads is accepted."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hami_mig.errors import InputError
from hami_mig.mig.config_keys import ENTRY_KEYS, NVIDIA_KEYS, RULE_KEYS, VENDOR_SECTIONS, nearest_key, unknown_keys
from hami_mig.mig.geometry import parse_device_config
from hami_mig.mig.yamldoc import YamlSyntaxError, load_yaml

# The nvidia: keys HAMi v2.9.0's own chart writes (charts/hami/templates/scheduler/device-configmap.yaml) and
# the fields of NvidiaConfig / NodeDefaultConfig (pkg/device/nvidia/device.go, v2.9.0): every one is tolerated.
HAMI_V29_CHART_KEYS = (
    "resourceCountName", "resourceMemoryName", "resourceMemoryPercentageName", "resourceCoreName",
    "resourcePriorityName", "overwriteEnv", "defaultMemory", "defaultCores", "defaultGPUNum",
    "preConfiguredDeviceMemory", "memoryFactor", "deviceSplitCount", "deviceMemoryScaling", "deviceCoreScaling",
    "gpuCorePolicy", "libCudaLogLevel", "runtimeClassName", "knownMigGeometries",
)
HAMI_V29_STRUCT_ONLY = ("disableCoreLimit",)
# Config in pkg/scheduler/config/config.go, v2.9.0: the vendor sections beside `nvidia`.
HAMI_V29_SECTIONS = ("nvidia", "metax", "hygon", "cambricon", "mthreads", "iluvatars", "enflame", "kunlun",
                     "awsneuron", "amd", "vastai", "vnpus")


def test_every_key_hami_reads_is_accepted() -> None:
    assert set(HAMI_V29_CHART_KEYS + HAMI_V29_STRUCT_ONLY) <= NVIDIA_KEYS
    assert set(HAMI_V29_SECTIONS) <= VENDOR_SECTIONS
    # and the ones seen in real files beside them
    assert {"resourcePriorityName", "overwriteEnv", "deviceMemoryScaling", "deviceCoreScaling", "migstrategy"} <= (
        NVIDIA_KEYS)
    doc = {"nvidia": {k: 1 for k in HAMI_V29_CHART_KEYS if k != "knownMigGeometries"},
           **{s: {"anything": [1]} for s in HAMI_V29_SECTIONS if s != "nvidia"}}
    assert unknown_keys(doc) == []


def test_a_misspelt_key_is_named_with_the_one_meant_at_every_level() -> None:
    text = """
nvidia:
  knownMigGeometrys: []
  KnownMigGeometries:
  - modles: [A30]
    allowedGeometries:
    - [ {name: 1g.6gb, memroy: 6144, count: 4} ]
nvidai: {}
"""
    found = [(u.path, u.nearest) for u in unknown_keys(yaml.safe_load(text))]
    assert found == [
        ("nvidai", "nvidia"),
        ("nvidia.knownMigGeometrys", "knownMigGeometries"),
        ("nvidia.KnownMigGeometries", "knownMigGeometries"),
    ]
    # a bare nvidia section (no `nvidia:` key) is checked as such, and its geometries too
    bare = ("knownMigGeometries:\n- modles: [A30]\n  allowedGeometries:\n"
            "  - [ {name: 1g.6gb, memroy: 6144, count: 4} ]\n")
    assert [(u.path, u.nearest) for u in unknown_keys(yaml.safe_load(bare))] == [
        ("knownMigGeometries[0].modles", "models"),
        ("knownMigGeometries[0].allowedGeometries[0][0].memroy", "memory"),
    ]


def test_unknown_keys_are_kept_on_the_config_without_changing_what_it_means() -> None:
    config = parse_device_config("nvidia:\n  knownMigGeometrys: []\n  deviceSplitCount: 3\n")
    assert [u.message for u in config.unknown_keys] == [
        "nvidia.knownMigGeometrys: unknown key 'knownMigGeometrys' (did you mean 'knownMigGeometries'?); "
        "HAMi ignores it"]
    assert config.device_split_count == 3 and len(config.rules) == 8  # HAMi's reading: the built-in table


def test_nearest_prefers_the_same_word_in_another_case() -> None:
    assert nearest_key("DEVICESPLITCOUNT", NVIDIA_KEYS) == "deviceSplitCount"
    assert nearest_key("cout", ENTRY_KEYS) == "count"
    assert nearest_key("model", RULE_KEYS) == "models"


KEY = st.text(alphabet=string.ascii_letters, min_size=1, max_size=20)


@given(st.sets(st.sampled_from(sorted(NVIDIA_KEYS - {"knownMigGeometries"})), max_size=6),
       st.lists(st.sets(st.sampled_from(sorted(ENTRY_KEYS)), min_size=1), max_size=3), KEY)
def test_only_the_added_key_is_reported(keys: set[str], entries: list[set[str]], extra: str) -> None:
    rule = {"models": ["A30"], "allowedGeometries": [[{k: 1 for k in e} for e in entries]]}
    doc = {"nvidia": {**{k: 1 for k in keys}, "knownMigGeometries": [rule]}}
    assert unknown_keys(doc) == []
    doc["nvidia"][extra] = 1
    found = unknown_keys(doc)
    if extra in NVIDIA_KEYS:
        assert found == []
    else:
        assert [(u.path, u.key) for u in found] == [(f"nvidia.{extra}", extra)]
        assert found[0].nearest in NVIDIA_KEYS


@pytest.mark.parametrize(("text", "where"), [
    ("nvidia: {a: [", "line 1, column 14"),
    ("nvidia:\n  a: 1\n b: 2\n", "line 3, column 2"),
    ("nvidia:\n\tknownMigGeometries: []\n", "line 2, column 1"),
    ("a: 1\nb: \x07\n", "line 2, column 4"),
])
def test_broken_yaml_is_one_line_with_line_and_column(text: str, where: str) -> None:
    with pytest.raises(YamlSyntaxError) as err:
        load_yaml(text, "dc.yaml")
    message = str(err.value)
    assert message.startswith(f"dc.yaml: invalid YAML at {where}: ") and "\n" not in message
    assert isinstance(err.value, InputError) and err.value.field == "dc.yaml"
