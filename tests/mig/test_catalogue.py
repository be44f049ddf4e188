"""The packaged catalogue matches the shared spec, and model lookup is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hami_mig.mig.catalogue import UnknownModelError, UnknownProfileError, default_catalogue, nearest_profile

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "mig_profiles.json"  # sources: tests/data/README.md
PACKAGED = Path(__file__).resolve().parents[2] / "hami_mig" / "mig" / "data" / "mig_profiles.json"


def test_packaged_data_is_the_reference_catalogue() -> None:
    assert json.loads(PACKAGED.read_text()) == json.loads(REFERENCE.read_text())


def test_every_model_and_profile_is_loaded() -> None:
    raw = json.loads(PACKAGED.read_text())["models"]
    cat = default_catalogue()
    assert [m.name for m in cat.models] == [m["name"] for m in raw]
    for model, rm in zip(cat.models, raw, strict=True):
        assert [p.name for p in model.profiles] == [p["name"] for p in rm["profiles"]]
        for p, rp in zip(model.profiles, rm["profiles"], strict=True):
            assert p.memory_mib == rp["memory_mib"]
            assert p.starts == tuple(pl["start"] for pl in rp["placements"])
            assert all(pl["size"] == p.memory_slices for pl in rp["placements"])
            assert p.max_count == rp["max_count"]
            assert p.smi_profile_id == rp["smi_profile_id"]


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
        ("A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
        ("nvidia a100 sxm4 80gb", "NVIDIA A100-SXM4-80GB"),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
        ("H100-SXM5-80GB", "NVIDIA H100 80GB HBM3"),
        ("A100-80GB-PCIe", "NVIDIA A100 80GB PCIe"),
        ("NVIDIA H200", "NVIDIA H200"),
        ("H20", "NVIDIA H20"),
        ("H100 on GH200", "NVIDIA GH200 480GB"),
        ("A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"),  # pre-R510 name without the prefix
    ],
)
def test_lookup_normalises_but_is_exact(name: str, model: str) -> None:
    assert default_catalogue().lookup(name).name == model


@pytest.mark.parametrize("name", ["H2", "A100", "H100", "NVIDIA H200X", "H100-SXM5-94GB", "NVIDIA", ""])
def test_no_substring_matches(name: str) -> None:
    cat = default_catalogue()
    with pytest.raises(UnknownModelError) as err:
        cat.lookup(name)
    assert "known models:" in str(err.value)
    assert "NVIDIA A100-SXM4-80GB" in str(err.value)


def test_h20_never_finds_h200() -> None:
    cat = default_catalogue()
    assert cat.lookup("H20").name != cat.lookup("NVIDIA H200").name


def test_unknown_profile_names_the_nearest() -> None:
    model = default_catalogue().lookup("A100-SXM4-80GB")
    with pytest.raises(UnknownProfileError) as err:
        model.profile("7g.79gb")
    assert "did you mean 7g.80gb" in str(err.value)
    assert nearest_profile(model, "3g.39gb") == "3g.40gb"
    assert nearest_profile(model, "garbage") is None


def test_largest_profile_is_the_whole_gpu_instance() -> None:
    for model in default_catalogue().models:
        assert model.largest.memory_slices == model.memory_slices
        assert not model.largest.media_extension
