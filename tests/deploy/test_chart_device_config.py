"""The device-config ConfigMap the chart renders is HAMi's format with HAMi's built-in geometry table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from hami_mig.mig.geometry import default_device_config, parse_device_config
from tests.deploy.chartutil import Manifest, only

Render = Callable[..., list[Manifest]]

# HAMi's built-in knownMigGeometries (last legacy state), transcribed from the table in
# shared/spec/hami-protocol.md: (models, [geometry, ...]) with a geometry = [(count, name, memory MiB, core %), ...].
HAMI_DEFAULT_TABLE: list[tuple[list[str], list[list[tuple[int, str, int, int]]]]] = [
    (["A30"], [
        [(4, "1g.6gb", 6144, 25)],
        [(2, "2g.12gb", 12288, 50)],
        [(1, "4g.24gb", 24576, 100)],
    ]),
    (["A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB"], [
        [(7, "1g.5gb", 5120, 14)],
        [(1, "1g.5gb", 5120, 14), (3, "2g.10gb", 10240, 28)],
        [(2, "3g.20gb", 20480, 42)],
        [(1, "7g.40gb", 40960, 100)],
    ]),
    (["A100-SXM4-80GB", "A100-80GB-PCIe", "A100-PCIE-80GB"], [
        [(7, "1g.10gb", 9728, 14)],
        [(1, "1g.10gb", 9728, 14), (3, "2g.20gb", 19968, 28)],
        [(2, "3g.40gb", 40192, 42)],
        [(1, "7g.80gb", 80896, 98)],
    ]),
    (["H100-PCIE-80GB", "H100-SXM5-80GB"], [
        [(7, "1g.10gb", 10240, 14)],
        [(1, "1g.10gb", 10240, 14), (3, "2g.20gb", 20480, 28)],
        [(2, "3g.40gb", 40960, 42)],
        [(1, "7g.80gb", 81920, 100)],
    ]),
    (["H100-PCIE-94GB", "H100-SXM5-94GB"], [
        [(7, "1g.12gb", 12288, 14)],
        [(1, "1g.12gb", 12288, 14), (3, "2g.24gb", 24576, 28)],
        [(2, "3g.47gb", 48128, 42)],
        [(1, "7g.94gb", 96256, 100)],
    ]),
    (["H20", "H100 on GH200"], [
        [(7, "1g.12gb", 12288, 14)],
        [(1, "1g.12gb", 12288, 14), (3, "2g.24gb", 24576, 28)],
        [(2, "3g.48gb", 49152, 42)],
        [(1, "7g.96gb", 98304, 100)],
    ]),
    (["H200 NVL", "H200-SXM5"], [
        [(7, "1g.18gb", 18432, 14)],
        [(1, "1g.18gb", 18432, 14), (3, "2g.35gb", 35840, 28)],
        [(2, "3g.71gb", 72704, 42)],
        [(1, "7g.141gb", 144384, 100)],
    ]),
    (["B200"], [
        [(7, "1g.23gb", 23552, 14)],
        [(1, "1g.23gb", 23552, 14), (3, "2g.45gb", 46080, 28)],
        [(2, "3g.90gb", 92160, 42)],
        [(1, "7g.180gb", 184320, 100)],
    ]),
]


def hami_default_geometries() -> list[dict[str, Any]]:
    return [
        {"models": models,
         "allowedGeometries": [[{"name": n, "memory": m, "count": c, "core": k} for c, n, m, k in geo] for geo in geos]}
        for models, geos in HAMI_DEFAULT_TABLE
    ]


def device_config(objects: list[Manifest]) -> tuple[str, dict[str, Any]]:
    text = only(objects, "ConfigMap", "-device-config")["data"]["device-config.yaml"]
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict) and set(doc) == {"nvidia"}, doc
    section: dict[str, Any] = doc["nvidia"]
    return text, section


def test_default_device_config_is_hamis(render: Render) -> None:
    _text, nvidia = device_config(render())
    assert nvidia["knownMigGeometries"] == hami_default_geometries()
    assert {k: v for k, v in nvidia.items() if k != "knownMigGeometries"} == {
        "resourceCountName": "nvidia.com/gpu",
        "resourceMemoryName": "nvidia.com/gpumem",
        "resourceMemoryPercentageName": "nvidia.com/gpumem-percentage",
        "resourceCoreName": "nvidia.com/gpucores",
        "deviceSplitCount": 10,
        "defaultMemory": 0,
        "defaultCores": 0,
        "defaultGPUNum": 1,
    }


def test_types_survive_rendering(render: Render) -> None:
    """Integers stay integers (Helm holds numbers as floats: 1e+06 would break HAMi's Go parser)."""
    big = {"models": ["GB300"], "allowedGeometries": [[{"name": "7g.288gb", "memory": 1_000_000, "count": 1}]]}
    _text, nvidia = device_config(render({"deviceConfig": {"knownMigGeometries": [big], "defaultMemory": 2_000_000}}))
    assert nvidia["knownMigGeometries"] == [big]  # no core key invented when the value has none
    assert nvidia["defaultMemory"] == 2_000_000
    for rule in device_config(render())[1]["knownMigGeometries"]:
        for geometry in rule["allowedGeometries"]:
            for entry in geometry:
                assert all(type(entry[k]) is int for k in ("memory", "count", "core")), entry


def test_overrides_and_extra_keys(render: Render) -> None:
    custom = [{"models": ["A100-SXM4-40GB"], "allowedGeometries": [[{"name": "3g.20gb", "memory": 20480, "count": 2,
                                                                     "core": 42}]]}]
    _text, nvidia = device_config(render({"deviceConfig": {
        "deviceSplitCount": 7,
        "resourceCountName": "example.com/gpu",
        "knownMigGeometries": custom,
        "extra": {"overwriteEnv": False, "deviceMemoryScaling": 1.5, "migstrategy": "mixed"},
    }}))
    assert nvidia["knownMigGeometries"] == custom
    assert nvidia["deviceSplitCount"] == 7
    assert nvidia["resourceCountName"] == "example.com/gpu"
    assert (nvidia["overwriteEnv"], nvidia["deviceMemoryScaling"], nvidia["migstrategy"]) == (False, 1.5, "mixed")


def test_model_names_with_spaces_and_quotes_stay_strings(render: Render) -> None:
    odd = [{"models": ["H100 on GH200", "yes", "1e3", 'a "quoted" one'],
            "allowedGeometries": [[{"name": "1g.12gb", "memory": 12288, "count": 7, "core": 14}]]}]
    _text, nvidia = device_config(render({"deviceConfig": {"knownMigGeometries": odd}}))
    assert nvidia["knownMigGeometries"][0]["models"] == ["H100 on GH200", "yes", "1e3", 'a "quoted" one']


def test_the_agent_reads_the_rendered_config_as_its_own_default(render: Render) -> None:
    text, _nvidia = device_config(render())
    config = parse_device_config(text)
    assert config == default_device_config()
    assert config.unknown_keys == ()  # the agent would warn about any other key on every start
