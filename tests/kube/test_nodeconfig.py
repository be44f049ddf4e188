"""The device-plugin node ConfigMap: HAMi's shape, tolerated extras, and errors that say what is wrong."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hami_mig.errors import InputError
from hami_mig.kube.nodeconfig import NodeConfig, node_config_for, parse_node_configs

SPEC_EXAMPLE = """{"nodeconfig": [{"name": "node-a", "operatingmode": "mig", "devicesplitcount": 10,
                 "filterdevices": {"uuid": [], "index": []}}]}"""


def test_spec_example() -> None:
    assert node_config_for(SPEC_EXAMPLE, "node-a") == NodeConfig(name="node-a", operating_mode="mig")


def test_keys_match_without_regard_to_case_as_hamis_go_decoder() -> None:
    # DevicePluginConfigs (pkg/device/nvidia/device.go, v2.9.0) is read with encoding/json, whose Unmarshal
    # matches `json:"operatingmode"` etc. case-insensitively; the last of two spellings wins.
    text = json.dumps({"nodeConfig": [{"Name": "n", "operatingMode": "hami-core", "OperatingMode": "mig",
                                       "deviceSplitCount": 4, "filterDevices": {"UUID": ["GPU-1"], "Index": [2]},
                                       "enableGetPreferredAllocation": True}]})
    (entry,) = parse_node_configs(text)
    assert (entry.name, entry.operating_mode, entry.device_split_count) == ("n", "mig", 4)
    assert (entry.filter_uuids, entry.filter_indices) == (("GPU-1",), (2,))
    assert node_config_for(text, "n").operating_mode == "mig"


def test_unlisted_node_and_empty_documents_get_defaults() -> None:
    assert node_config_for(SPEC_EXAMPLE, "node-b", default_split_count=7) == NodeConfig(
        name="node-b", operating_mode="hami-core", device_split_count=7
    )
    assert parse_node_configs("") == ()
    assert parse_node_configs("{}") == ()
    assert parse_node_configs('{"nodeconfig": null}') == ()


def test_other_hami_keys_are_tolerated_and_kept() -> None:
    text = json.dumps({
        "nodeconfig": [{
            "name": "n", "operatingmode": "hami-core", "devicememoryscaling": 1.5, "devicecorescaling": 1,
            "migstrategy": "none", "enablegetpreferredallocation": True, "libcudalog": 2,
            "filterdevices": {"uuid": ["GPU-1"], "index": [3]},
        }],
        "other": 1,
    })
    config = node_config_for(text, "n")
    assert config.device_memory_scaling == 1.5 and config.device_core_scaling == 1.0
    assert config.mig_strategy == "none"
    assert dict(config.extra) == {"enablegetpreferredallocation": "true", "libcudalog": "2"}
    assert config.filters("GPU-1", 0) and config.filters("GPU-9", 3) and not config.filters("GPU-9", 0)
    assert config.device_split_count == 10


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "n", "operatingmode": "MIG"}, "operatingmode"),
        ({"name": "n", "devicesplitcount": "10"}, "devicesplitcount"),
        ({"name": "n", "devicesplitcount": 0}, "devicesplitcount"),
        ({"name": "n", "filterdevices": []}, "filterdevices"),
        ({"name": "n", "filterdevices": {"uuid": "GPU-1"}}, "filterdevices.uuid"),
        ({"name": "n", "filterdevices": {"index": ["0"]}}, "filterdevices.index"),
        ({"name": "n", "devicememoryscaling": "2"}, "devicememoryscaling"),
        ({"name": "n", "migstrategy": 1}, "migstrategy"),
        ({"operatingmode": "mig"}, "name"),
        ("node-a", "nodeconfig[0]"),
    ],
)
def test_wrong_types_name_the_node_and_key(entry: object, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_node_configs(json.dumps({"nodeconfig": [entry]}))
    assert field in info.value.field


@pytest.mark.parametrize("text", ["{", "[]", '{"nodeconfig": {}}', "NaN"])
def test_malformed_documents(text: str) -> None:
    with pytest.raises(InputError):
        parse_node_configs(text)


def test_conflicting_duplicates_are_an_error() -> None:
    same = json.dumps({"nodeconfig": [{"name": "n", "operatingmode": "mig"}] * 2})
    assert node_config_for(same, "n").operating_mode == "mig"
    differ = json.dumps({"nodeconfig": [{"name": "n", "operatingmode": "mig"}, {"name": "n"}]})
    with pytest.raises(InputError):
        node_config_for(differ, "n")


@given(st.text())
def test_fuzz(text: str) -> None:
    with contextlib.suppress(InputError):
        parse_node_configs(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


ENTRY_KEYS = ["name", "operatingmode", "devicesplitcount", "filterdevices", "devicememoryscaling", "migstrategy"]


@given(st.dictionaries(st.sampled_from(ENTRY_KEYS), json_values))
def test_fuzz_structured(entry: dict[str, object]) -> None:
    with contextlib.suppress(InputError):
        parse_node_configs(json.dumps({"nodeconfig": [entry]}))
