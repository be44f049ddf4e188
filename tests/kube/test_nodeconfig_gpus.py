"""config.json's per-GPU `gpus` list (hami-mig extension): HAMi files load unchanged, mistakes are named."""

from __future__ import annotations

import json

import pytest

from hami_mig.errors import InputError
from hami_mig.kube.nodeconfig import GpuMode, node_config_for


def entry(**extra: object) -> str:
    return json.dumps({"nodeconfig": [{"name": "n", "operatingmode": "mig", **extra}]})


def test_gpus_list_sets_modes_uuid_before_index() -> None:
    cfg = node_config_for(entry(gpus=[{"index": 1, "operatingmode": "hami-core"},
                                      {"uuid": "GPU-b", "operatingmode": "mig"}]), "n")
    assert cfg.gpu_modes == (GpuMode("hami-core", index=1), GpuMode("mig", uuid="GPU-b"))
    assert cfg.mode_of("GPU-a", 0) == ("mig", False)
    assert cfg.mode_of("GPU-a", 1) == ("hami-core", True)
    assert cfg.mode_of("GPU-b", 1) == ("mig", True)  # the UUID entry wins
    assert ("gpus", json.dumps([{"index": 1}])) not in cfg.extra


def test_hami_files_without_the_key_are_unchanged() -> None:
    cfg = node_config_for(entry(), "n")
    assert cfg.gpu_modes == () and cfg.mode_of("GPU-a", 3) == ("mig", False)


@pytest.mark.parametrize(
    ("gpus", "needle"),
    [
        ({"index": 0}, "gpus"),
        ([{"operatingmode": "mig"}], "exactly one of uuid or index"),
        ([{"uuid": "GPU-a", "index": 0, "operatingmode": "mig"}], "exactly one of uuid or index"),
        ([{"index": -1, "operatingmode": "mig"}], "gpus[0].index"),
        ([{"index": True, "operatingmode": "mig"}], "gpus[0].index"),
        ([{"uuid": "", "operatingmode": "mig"}], "gpus[0]"),
        ([{"index": 0, "operatingmode": "vgpu"}], "gpus[0].operatingmode"),
        ([{"index": 0}], "gpus[0].operatingmode"),
        ([{"index": 0, "operatingmode": "mig", "mode": "x"}], "only uuid, index and operatingmode"),
        ([{"index": 0, "operatingmode": "mig"}, {"index": 0, "operatingmode": "hami-core"}], "each GPU listed once"),
    ],
)
def test_mistakes_are_named(gpus: object, needle: str) -> None:
    with pytest.raises(InputError) as err:
        node_config_for(entry(gpus=gpus), "n")
    assert needle in str(err.value) and "node 'n'" in str(err.value)
