"""Pod resource limits -> Request: HAMi's defaults, and every bad value class named in the error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client

from hami_mig.errors import InputError
from hami_mig.kube.annotations import VGPU_MODE
from hami_mig.kube.resources import (
    ResourceNames,
    check_vgpu_mode,
    container_request,
    gpu_containers,
    mode_allows,
    pod_containers,
    pod_vgpu_mode,
)
from hami_mig.mig.request import Request

Obj = dict[str, Any]


def pod(*containers: Obj, init: list[Obj] | None = None, mode: str | None = None) -> Obj:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = init
    meta: dict[str, Any] = {"name": "p", "namespace": "default"}
    if mode is not None:
        meta["annotations"] = {VGPU_MODE: mode}
    return {"metadata": meta, "spec": spec}


def ctr(name: str = "main", limits: Obj | None = None, requests: Obj | None = None) -> Obj:
    resources: dict[str, Any] = {}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    return {"name": name, "resources": resources}


def test_spec_example() -> None:
    p = pod(ctr(limits={"nvidia.com/gpu": "2", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"}))
    assert container_request(p, 0) == Request(count=2, memory_mib=8000, cores=30)


def test_hami_defaults() -> None:
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem": "8000"})), 0) == Request(count=1, memory_mib=8000)
    assert container_request(pod(ctr(limits={"nvidia.com/gpu": 1})), 0) == Request(count=1)
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem-percentage": "25"})), 0) == Request(memory_percent=25)
    assert container_request(pod(ctr(limits={"cpu": "1"})), 0) is None
    assert container_request(pod(ctr()), 0) is None
    names = ResourceNames(default_gpu_num=2)
    expected = Request(count=2, memory_mib=1024)
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem": "1Ki"})), 0, names) == expected


def test_requests_count_when_limits_are_absent_per_key() -> None:
    p = pod(ctr(limits={"nvidia.com/gpu": "1"}, requests={"nvidia.com/gpu": "3", "nvidia.com/gpumem": "100"}))
    assert container_request(p, 0) == Request(count=1, memory_mib=100)


def test_indexing_matches_the_devices_annotation() -> None:
    p = pod(
        ctr("a"), ctr("b", limits={"nvidia.com/gpu": "1"}),
        init=[ctr("init-gpu", limits={"nvidia.com/gpumem": "10"}), ctr("init-plain")],
    )
    assert [c.name for c in pod_containers(p)] == ["init-gpu", "init-plain", "a", "b"]
    assert [c.init for c in pod_containers(p)] == [True, True, False, False]
    assert gpu_containers(p) == (0, 3)
    assert container_request(p, 0) == Request(memory_mib=10)
    with pytest.raises(InputError):
        container_request(p, 4)


def test_v1pod_models_work_like_dicts() -> None:
    model = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p", annotations={VGPU_MODE: "mig"}),
        spec=client.V1PodSpec(
            init_containers=[client.V1Container(name="i")],
            containers=[client.V1Container(name="c", resources=client.V1ResourceRequirements(
                limits={"nvidia.com/gpu": "2", "nvidia.com/gpumem-percentage": "50"}))],
        ),
    )
    assert gpu_containers(model) == (1,)
    assert container_request(model, 1) == Request(count=2, memory_percent=50)
    assert pod_vgpu_mode(model) == "mig"


def test_renamed_resources_from_device_config() -> None:
    names = ResourceNames.from_device_config(
        {"resourceCountName": "example.com/vgpu", "resourceMemoryName": "example.com/mem", "defaultGPUNum": 1,
         "deviceSplitCount": 10}
    )
    p = pod(ctr(limits={"example.com/vgpu": "1", "example.com/mem": "10", "nvidia.com/gpu": "5"}))
    assert container_request(p, 0, names) == Request(count=1, memory_mib=10)
    for bad in ({"resourceCountName": 5}, {"resourceMemoryName": "gpumem"}, {"defaultGPUNum": 0}):
        with pytest.raises(InputError):
            ResourceNames.from_device_config(bad)


@pytest.mark.parametrize(
    ("limits", "key", "words"),
    [
        ({"nvidia.com/gpu": "4294967296"}, "nvidia.com/gpu", "too large"),
        ({"nvidia.com/gpumem": "3Gi"}, "nvidia.com/gpumem", "too large"),
        ({"nvidia.com/gpumem": "1e40"}, "nvidia.com/gpumem", "too large"),
        ({"nvidia.com/gpu": "-1"}, "nvidia.com/gpu", "negative"),
        ({"nvidia.com/gpumem": "-8000"}, "nvidia.com/gpumem", "negative"),
        ({"nvidia.com/gpu": "1.5"}, "nvidia.com/gpu", "fractional"),
        ({"nvidia.com/gpu": "500m"}, "nvidia.com/gpu", "fractional"),
        ({"nvidia.com/gpumem": "0.5"}, "nvidia.com/gpumem", "fractional"),
        ({"nvidia.com/gpu": "two"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": ""}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": "1 GPU"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": "NaN"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": "Infinity"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": True}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": ["1"]}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": "\uff12"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpu": "1\u0660"}, "nvidia.com/gpu", "not a number"),
        ({"nvidia.com/gpumem": "8000\u200b"}, "nvidia.com/gpumem", "not a number"),
        ({"nvidia.com/gpumem": "1ki"}, "nvidia.com/gpumem", "not a number"),
        ({"nvidia.com/gpumem-percentage": "101"}, "nvidia.com/gpumem-percentage", "over 100"),
        ({"nvidia.com/gpumem-percentage": "0"}, "nvidia.com/gpumem-percentage", "zero"),
        ({"nvidia.com/gpucores": "-5"}, "nvidia.com/gpucores", "negative"),
    ],
)
def test_every_bad_value_class_is_named(limits: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        container_request(pod(ctr("trainer", limits=limits)), 0)
    message = str(info.value)
    assert key in message
    assert "'trainer'" in message
    assert words in message


def test_requests_hamis_scheduler_accepts_are_read_as_it_reads_them() -> None:
    """GenerateResourceRequests and Fit in pkg/device/nvidia/device.go (v2.9.0)."""
    both = {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000", "nvidia.com/gpumem-percentage": "50"}
    assert container_request(pod(ctr(limits=both)), 0) == Request(memory_mib=8000)  # memreq wins when > 0
    zero_mem = {"nvidia.com/gpumem": "0", "nvidia.com/gpumem-percentage": "50"}
    assert container_request(pod(ctr(limits=zero_mem)), 0) == Request(memory_percent=50)  # Memreq == 0: percent
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem": "0"})), 0) == Request()  # mempnum = 100
    # `if k.Coresreq > 100 { k.Coresreq = 100 }` in Fit
    assert container_request(pod(ctr(limits={"nvidia.com/gpucores": "150"})), 0) == Request(cores=100)
    # Nums 0: GenerateResourceRequests returns an empty request; the container asks for no GPU
    assert container_request(pod(ctr(limits={"nvidia.com/gpu": "0", "nvidia.com/gpumem": "10"})), 0) is None


def test_memory_factor_and_defaults_as_hami_applies_them() -> None:
    """`memnums * MemoryFactor` (v2.8+), defaultMemory when neither memory is given, defaultCores."""
    names = ResourceNames(memory_factor=1024, default_memory=0, default_cores=30)
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem": "10"})), 0, names) == Request(memory_mib=10240,
                                                                                                  cores=30)
    assert container_request(pod(ctr(limits={"nvidia.com/gpumem-percentage": "25"})), 0, names) == Request(
        memory_percent=25, cores=30)
    with_default = ResourceNames(default_memory=5000)
    assert container_request(pod(ctr(limits={"nvidia.com/gpu": "1"})), 0, with_default) == Request(memory_mib=5000)
    with pytest.raises(InputError) as info:
        container_request(pod(ctr(limits={"nvidia.com/gpumem": "3000000"})), 0, ResourceNames(memory_factor=1024))
    assert "memoryFactor 1024" in str(info.value)


def test_gpucores_zero_means_no_core_filter() -> None:
    assert container_request(pod(ctr(limits={"nvidia.com/gpucores": "0"})), 0) == Request(cores=0)


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none()))
def test_any_value_parses_or_raises_input_error(value: object) -> None:
    try:
        result = container_request(pod(ctr(limits={"nvidia.com/gpumem": value})), 0)
    except InputError as exc:
        assert "nvidia.com/gpumem" in str(exc)
    else:
        assert (result is None) == (value is None)
        assert result is None or result.memory_mib is None or 1 <= result.memory_mib < 2**31  # None: gpumem 0


@given(st.integers(1, 2**31 - 1), st.sampled_from(["", "k", "Ki", "M", "Mi"]))
def test_whole_quantities_with_suffixes(number: int, suffix: str) -> None:
    scale = {"": 1, "k": 1000, "Ki": 1024, "M": 10**6, "Mi": 2**20}[suffix]
    p = pod(ctr(limits={"nvidia.com/gpumem": f"{number}{suffix}"}))
    if number * scale < 2**31:
        assert container_request(p, 0) == Request(memory_mib=number * scale)
    else:
        with pytest.raises(InputError, match="too large"):
            container_request(p, 0)


def test_vgpu_mode_rule() -> None:
    assert mode_allows(None, "mig")
    assert mode_allows("mig", "mig") and not mode_allows("mig", "hami-core")
    assert mode_allows("hami-core,mig", "hami-core") and mode_allows("hami-core,mig", "mig")
    # checkType (v2.9.0): a present annotation is matched with strings.Contains, so "" allows no mode at all
    assert pod_vgpu_mode(pod(ctr(), mode="")) == "" and not mode_allows("", "mig")
    assert pod_vgpu_mode(pod(ctr())) is None
    check_vgpu_mode(pod(ctr()), "mig")
    check_vgpu_mode(pod(ctr(), mode="mig"), "mig")
    with pytest.raises(InputError) as info:
        check_vgpu_mode(pod(ctr(), mode="hami-core"), "mig")
    assert VGPU_MODE in str(info.value) and "'mig'" in str(info.value)


def test_malformed_pods() -> None:
    with pytest.raises(InputError):
        pod_containers({"metadata": {}})
    with pytest.raises(InputError):
        pod_containers({"spec": {"containers": "main"}})
    with pytest.raises(InputError):
        pod_containers({"spec": {"containers": [{"name": "c", "resources": {"limits": ["x"]}}]}})
