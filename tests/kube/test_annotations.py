"""Pod devices string, MIG slot refs, bind phase and times: exact HAMi bytes, round trips, fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    BindPhase,
    ContainerDevice,
    MigSlotRef,
    decode_bind_phase,
    decode_pod_devices,
    decode_unix_time,
    encode_pod_devices,
    encode_unix_time,
    erase_next_container,
    next_pending_container,
)
from tests.hami_go import (
    allocation_try_success_v29,
    erase_next_device_type_v29,
    get_next_device_request_v29,
)

SPEC_EXAMPLE = "GPU-x[1-1],NVIDIA,10240,28:GPU-x[1-2],NVIDIA,10240,28:;"

uuids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12).map(lambda s: "GPU-" + s)
slots = st.builds(MigSlotRef, uuids, st.integers(0, 20), st.integers(0, 20))
device_ids = st.one_of(uuids, slots.map(MigSlotRef.encode))
devices = st.builds(
    ContainerDevice,
    uuid=device_ids,
    vendor=st.sampled_from(["NVIDIA", "MLU", "Ascend910"]),
    memory_mib=st.integers(0, 2**31 - 1),
    cores=st.integers(0, 100),
)
pod_devices = st.lists(st.lists(devices, max_size=3).map(tuple), max_size=5).map(tuple)


def test_spec_example_encodes_exactly() -> None:
    pod = ((
        ContainerDevice(uuid="GPU-x[1-1]", memory_mib=10240, cores=28),
        ContainerDevice(uuid="GPU-x[1-2]", memory_mib=10240, cores=28),
    ),)
    assert encode_pod_devices(pod) == SPEC_EXAMPLE
    assert decode_pod_devices(SPEC_EXAMPLE) == pod


def test_init_and_empty_containers_keep_their_places() -> None:
    gpu = ContainerDevice(uuid="GPU-a", memory_mib=5120, cores=14)
    pod = ((), (gpu,), ())
    assert encode_pod_devices(pod) == ";GPU-a,NVIDIA,5120,14:;;"
    assert decode_pod_devices(";GPU-a,NVIDIA,5120,14:;;") == pod


@pytest.mark.parametrize(
    ("text", "containers"),
    [("", 0), (" \n", 0), (";", 1), (";;", 2), ("GPU-a,NVIDIA,1,2:", 1), ("GPU-a,NVIDIA,1,2", 1), ("a,N,1,2:;;", 2)],
)
def test_decoder_is_as_lenient_as_hamis(text: str, containers: int) -> None:
    assert len(decode_pod_devices(text)) == containers


def test_whitespace_around_values_and_fields_is_tolerated() -> None:
    expected = ((ContainerDevice(uuid="GPU-a", memory_mib=10, cores=2),),)
    assert decode_pod_devices("  GPU-a , NVIDIA , 10 , 2 : ;\n") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("GPU-a,NVIDIA,10:;", "GPU-a,NVIDIA,10"),
        ("GPU-a,NVIDIA,10,2,9:;", "GPU-a,NVIDIA,10,2,9"),
        ("GPU-a,NVIDIA,ten,2:;", "GPU-a,NVIDIA,ten,2"),
        ("GPU-a,NVIDIA,-1,2:;", "GPU-a,NVIDIA,-1,2"),
        ("GPU-a,NVIDIA,99999999999,2:;", "GPU-a,NVIDIA,99999999999,2"),
        ("GPU-a[1-,NVIDIA,1,2:;", "GPU-a[1-,NVIDIA,1,2"),
        (",NVIDIA,1,2:;", ",NVIDIA,1,2"),
        ("GPU-a,,1,2:;", "GPU-a,,1,2"),
    ],
)
def test_bad_fragments_name_the_key_and_the_fragment(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        decode_pod_devices(text, DEVICES_ALLOCATED)
    assert info.value.field == DEVICES_ALLOCATED
    assert info.value.value == fragment
    assert DEVICES_ALLOCATED in str(info.value)


@given(pod_devices)
def test_pod_devices_round_trip(pod: tuple[tuple[ContainerDevice, ...], ...]) -> None:
    assert decode_pod_devices(encode_pod_devices(pod)) == pod


@given(st.text())
def test_arbitrary_text_decodes_or_raises_input_error(text: str) -> None:
    try:
        decoded = decode_pod_devices(text)
    except InputError as exc:
        assert exc.field == DEVICES_TO_ALLOCATE
    else:
        assert decode_pod_devices(encode_pod_devices(decoded)) == decoded


@given(st.text(alphabet="GPU-x[]0123456789,:;NVIDIA ", max_size=60))
def test_near_miss_text_decodes_or_raises_input_error(text: str) -> None:
    with contextlib.suppress(InputError):
        decode_pod_devices(text)


def test_mig_slot_ref() -> None:
    ref = MigSlotRef.parse("GPU-9366-abc[1-2]")
    assert ref == MigSlotRef("GPU-9366-abc", 1, 2)
    assert ref.encode() == "GPU-9366-abc[1-2]"
    assert MigSlotRef.parse("GPU-9366-abc") is None
    assert ContainerDevice(uuid="GPU-x[0-6]", memory_mib=1, cores=1).mig_slot == MigSlotRef("GPU-x", 0, 6)
    for bad in ("GPU-x[1]", "GPU-x[a-1]", "GPU-x[1-2", "[1-2]", "GPU-x[1-2]]", "GPU-x[-1-2]"):
        with pytest.raises(InputError):
            MigSlotRef.parse(bad)
    with pytest.raises(InputError):
        MigSlotRef("GPU-x", -1, 0)


@given(slots)
def test_mig_slot_round_trip(ref: MigSlotRef) -> None:
    assert MigSlotRef.parse(ref.encode()) == ref


def test_container_device_validates() -> None:
    for kwargs in (
        {"uuid": "GPU a", "memory_mib": 1, "cores": 1},
        {"uuid": "GPU:a", "memory_mib": 1, "cores": 1},
        {"uuid": "GPU-a", "memory_mib": -1, "cores": 1},
        {"uuid": "GPU-a", "memory_mib": True, "cores": 1},
        {"uuid": "GPU-a", "memory_mib": 1, "cores": 2**31},
        {"uuid": "GPU-a", "vendor": "", "memory_mib": 1, "cores": 1},
    ):
        with pytest.raises(InputError):
            ContainerDevice(**kwargs)  # type: ignore[arg-type]


def test_next_pending() -> None:
    a = ContainerDevice(uuid="GPU-a", memory_mib=1, cores=0)
    b = ContainerDevice(uuid="GPU-b", memory_mib=1, cores=0)
    assert next_pending_container(((), (a,), (b,))) == 1
    assert next_pending_container(((), (), (b,))) == 2
    assert next_pending_container(((), (), ())) is None


def test_erase_is_byte_for_byte_hamis() -> None:
    # eraseNextDeviceTypeFromAnnotation (plugin/util.go, v2.9.0) decodes with DecodePodDevices, which splits on
    # ";" and keeps the empty tail after the last ";" (util_test.go TestGetNextDeviceRequest_DeviceInRegularContainer:
    # "After split by ";", we get ["UUID,Type,mem,cores:", ""]"), empties the first entry with devices and
    # re-encodes every entry with EncodePodSingleDevice (each followed by ";"). Worked by hand from that code:
    two = "GPU-a[1-1],NVIDIA,10240,28:;GPU-a[1-2],NVIDIA,10240,28:;"
    assert erase_next_container(two) == ";GPU-a[1-2],NVIDIA,10240,28:;;"
    assert erase_next_container(";GPU-a[1-2],NVIDIA,10240,28:;;") == ";;;;"
    assert erase_next_container("GPU-abc123,NVIDIA,1000,30:;") == ";;"  # util_test.go's one-container value
    assert erase_next_container("GPU-init1,NVIDIA,500,10:;;") == ";;;"  # util_test.go's init-container value
    assert erase_next_container(";;GPU-main1,NVIDIA,2000,50:;") == ";;;;"
    # GetNextDeviceRequest (v2.9.0 util_test.go): the index of the first entry with devices is the container's
    for text, index in (("GPU-init1,NVIDIA,500,10:;;", 0), (";;GPU-main1,NVIDIA,2000,50:;", 2),
                        (";GPU-a[1-2],NVIDIA,10240,28:;;", 1)):
        assert next_pending_container(decode_pod_devices(text)) == index == get_next_device_request_v29(text)
    assert next_pending_container(decode_pod_devices(";;")) is None  # TestGetNextDeviceRequest_NoDeviceFound


@given(pod_devices)
def test_erase_matches_hamis_code_on_any_value(devices: tuple[tuple[ContainerDevice, ...], ...]) -> None:
    text = encode_pod_devices(tuple(tuple(ContainerDevice(uuid=d.uuid, memory_mib=d.memory_mib, cores=d.cores)
                                          for d in c) for c in devices))
    while True:
        erased = erase_next_container(text)
        assert erased == erase_next_device_type_v29(text)
        done = next_pending_container(decode_pod_devices(erased)) is None
        assert done == allocation_try_success_v29(erased)  # podAllocationTrySuccess: nothing NVIDIA left
        if done or erased == text:
            break
        text = erased


def test_bind_phase_and_times() -> None:
    assert [decode_bind_phase(v) for v in ("allocating", "success", "failed")] == list(BindPhase)
    assert str(BindPhase.SUCCESS) == "success"
    with pytest.raises(InputError) as info:
        decode_bind_phase("done")
    assert info.value.field == BIND_PHASE
    assert encode_unix_time(1715000000.9) == "1715000000"
    assert decode_unix_time("1715000000") == 1715000000
    for bad in ("", "-1", "1.5", "\uff11\uff12"):
        with pytest.raises(InputError):
            decode_unix_time(bad)
