"""Node register JSON, the mutex lock and the handshake: round trips, HAMi's encodings, fuzz."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODES, NODE_HANDSHAKE, NODE_LOCK, NODE_REGISTER
from hami_mig.kube.handshake import Handshake, HandshakeState
from hami_mig.kube.nodelock import NodeLock
from hami_mig.kube.register import NodeDevice, decode_node_register, encode_node_register, register_type
from tests.hami_go import GoDecodeError, decode_node_devices_v271, unmarshal_node_devices_v29

node_devices = st.builds(
    NodeDevice,
    id=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=20).map(lambda s: "GPU-" + s),
    index=st.integers(0, 16),
    count=st.integers(0, 100),
    devmem=st.integers(0, 200_000),
    devcore=st.integers(0, 100),
    type=st.sampled_from(["NVIDIA A100-SXM4-40GB", "NVIDIA-NVIDIA H100 80GB HBM3", "A30"]),
    numa=st.integers(0, 8),
    mode=st.sampled_from(MODES),
    health=st.booleans(),
)


def test_register_json_is_byte_for_byte_hamis_marshal() -> None:
    # Field set and values: pkg/device/nvidia/device_test.go (v2.9.0) registers a MIG A100 as
    # {"id":"GPU-0","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA-A100-SXM4-40GB","numa":0,"health":true,
    # "mode":"mig"}. Bytes: MarshalNodeDevices (pkg/device/devices.go, v2.9.0) writes DeviceInfo's fields in struct
    # order with omitempty, and always `"devicepairscore":{}` (a struct), as the marshalled register in
    # pkg/device/vastai/device_test.go (v2.9.0) shows:
    # [{"id":"7-0","count":1,"devmem":32768,"type":"Vastai","health":true,"devicepairscore":{}}]
    gpu = NodeDevice(id="GPU-0", index=0, count=7, devmem=40960, devcore=100, type="NVIDIA-A100-SXM4-40GB", numa=0,
                     mode="mig", health=True)
    text = encode_node_register([gpu])
    assert text == ('[{"id":"GPU-0","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA-A100-SXM4-40GB",'
                    '"mode":"mig","health":true,"devicepairscore":{}}]')
    assert decode_node_register(text) == (gpu,)
    second = NodeDevice(id="GPU-1", index=1, count=10, devmem=81920, type="NVIDIA A100-SXM4-80GB", numa=1, mode="mig")
    assert encode_node_register([gpu, second]).endswith(
        '{"id":"GPU-1","index":1,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","numa":1,'
        '"mode":"mig","health":true,"devicepairscore":{}}]')


@pytest.mark.parametrize("text", [
    # pkg/device/nvidia/device_test.go (v2.9.0), the RegisterAnnos values HAMi's scheduler reads
    '[{"id":"GPU-0","count":5,"devmem":8192,"devcore":100,"type":"NVIDIA-Tesla P4","numa":0,"health":true,"index":0}]',
    '[{"id":"GPU-0","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA-A100-SXM4-40GB","numa":0,"health":true,'
    '"mode":"mig"}]',
    '[{"id":"GPU-0","count":1,"devmem":8192,"devcore":100,"type":"NVIDIA-V100","health":true},{"id":"GPU-1","count":1,'
    '"devmem":8192,"devcore":100,"type":"NVIDIA-V100","health":true}]',
])
def test_register_reads_hamis_own_annotations(text: str) -> None:
    devices = decode_node_register(text)
    assert [(d.id, d.type, d.health) for d in devices] == [(g.ID, g.Type, g.Health)
                                                          for g in unmarshal_node_devices_v29(text)]


def test_register_type_is_what_each_hami_generation_writes() -> None:
    # v2.8+: register.go getAPIDevices (v2.9.0) prepends "NVIDIA-" only when the NVML name lacks "NVIDIA".
    assert register_type("NVIDIA A100-SXM4-40GB") == "NVIDIA A100-SXM4-40GB"
    assert register_type("Tesla P4") == "NVIDIA-Tesla P4"  # the type of devices_test.go's P4 (v2.7.1)
    # v2.5-v2.7: register.go getAPIDevices (v2.7.1) always writes fmt.Sprintf("%v-%v", "NVIDIA", Model).
    assert register_type("NVIDIA A100-SXM4-40GB", "legacy") == "NVIDIA-NVIDIA A100-SXM4-40GB"


def test_register_legacy_is_byte_for_byte_hamis_encode() -> None:
    # pkg/device/devices_test.go Test_EncodeNodeDevices (v2.7.1): "old format" and "test two"
    p4 = dict(id="GPU-ebe7c3f7-303d-558d-435e-99a160631fe4", count=10, devmem=7680, devcore=100,
              type="NVIDIA-Tesla P4", numa=0, mode="hami-core", health=True)
    assert encode_node_register([NodeDevice(index=0, **p4)], "legacy") == \
        "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true,0,hami-core:"
    assert encode_node_register([NodeDevice(index=1, **p4)], "legacy") == \
        "GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true,1,hami-core:"
    # Test_DecodeNodeDevices (v2.7.1): the 7-field "old format" means index 0, mode hami-core
    (old,) = decode_node_register("GPU-ebe7c3f7-303d-558d-435e-99a160631fe4,10,7680,100,NVIDIA-Tesla P4,0,true:")
    assert old == NodeDevice(index=0, **p4)


@given(st.lists(node_devices, min_size=1, max_size=8))
def test_register_formats_decode_in_hamis_decoders(devices: list[NodeDevice]) -> None:
    """Both formats, read by ports of HAMi's own decoders, give back every field."""
    def fields(d: NodeDevice) -> tuple[object, ...]:
        return (d.id, d.index, d.count, d.devmem, d.devcore, d.type, d.numa, d.mode, d.health)

    want = [fields(d) for d in devices]
    as_json = encode_node_register(devices)
    assert [(g.ID, g.Index, g.Count, g.Devmem, g.Devcore, g.Type, g.Numa, g.Mode, g.Health)
            for g in unmarshal_node_devices_v29(as_json)] == want
    legacy = encode_node_register(devices, "legacy")
    assert [(g.ID, g.Index, g.Count, g.Devmem, g.Devcore, g.Type, g.Numa, g.Mode, g.Health)
            for g in decode_node_devices_v271(legacy)] == want
    with pytest.raises(GoDecodeError):  # why the legacy format exists: v2.5-v2.7 cannot read the JSON
        decode_node_devices_v271(as_json)
    assert decode_node_register(legacy) == tuple(devices)


def test_register_reads_go_omitempty_output_and_extra_keys() -> None:
    text = '[{"id":"GPU-2","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-NVIDIA H100","devicevendor":"NVIDIA",'
    text += '"custominfo":{"a":1}}]'
    (gpu,) = decode_node_register(text)
    assert (gpu.index, gpu.numa, gpu.health, gpu.mode) == (0, 0, False, "hami-core")


@pytest.mark.parametrize(
    "text",
    [
        "", "{}", "[1]", '[{"index":0}]', '[{"id":"g","type":"t","devmem":"40"}]',
        '[{"id":"g","type":"t","mode":"x"}]', '[{"id":"g","type":"t","health":"yes"}]',
        '[{"id":"g","type":"t","index":-1}]', '[{"id":"g","type":"t","count":1.5}]',
        '[{"id":"g"}]', "GPU-1,10,46068,100,NVIDIA-NVIDIA A40,0:", "a", "GPU-1,x,1,1,t,0,true:",
        "GPU-1,1,1,1,t,0,maybe:",
    ],
)
def test_register_rejects_with_input_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        decode_node_register(text)
    assert NODE_REGISTER in str(info.value)


@given(st.lists(node_devices, max_size=8))
def test_register_round_trip(devices: list[NodeDevice]) -> None:
    assert decode_node_register(encode_node_register(devices)) == tuple(devices)


@given(st.text())
def test_register_fuzz(text: str) -> None:
    with contextlib.suppress(InputError):
        decode_node_register(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                        ["id", "index", "count", "devmem", "devcore", "type", "numa", "mode", "health", "x"]),
                        inner, max_size=9), max_leaves=20))
def test_register_fuzz_structured(value: object) -> None:
    with contextlib.suppress(InputError):
        decode_node_register(json.dumps([value]))


# --- mutex lock ----------------------------------------------------------------------------------
def test_lock_format_and_expiry() -> None:
    at = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    lock = NodeLock(at, "team-a", "train-0")
    assert lock.encode() == "2024-05-01T10:00:00Z,team-a,train-0"
    assert NodeLock.decode("2024-05-01T10:00:00Z,team-a,train-0") == lock
    assert NodeLock.decode("2024-05-01T18:00:00+08:00,team-a,train-0").locked_at == at
    assert NodeLock(at.astimezone(timezone(timedelta(hours=8))), "a", "b").encode() == "2024-05-01T18:00:00+08:00,a,b"
    assert not lock.expired(at + timedelta(minutes=5))
    assert lock.expired(at + timedelta(minutes=5, seconds=1))
    assert lock.held_by("team-a", "train-0") and not lock.held_by("team-a", "other")
    legacy = NodeLock.decode("2024-05-01T10:00:00Z")
    assert (legacy.namespace, legacy.pod) == ("", "")
    assert legacy.encode() == "2024-05-01T10:00:00Z"


@pytest.mark.parametrize(
    "text", ["", "now,a,b", "2024-05-01 10:00:00,a,b", "2024-05-01T10:00:00,a,b", "2024-05-01T10:00:00Z,a",
             "2024-05-01T10:00:00Z,,b", "2024-13-01T10:00:00Z,a,b"],
)
def test_lock_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        NodeLock.decode(text)
    assert NODE_LOCK in str(info.value)


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.integers(-14 * 60, 14 * 60),
    st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z"),
    st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?\Z"),
)
def test_lock_round_trip(at: datetime, offset_min: int, namespace: str, pod: str) -> None:
    lock = NodeLock(at.astimezone(timezone(timedelta(minutes=offset_min))), namespace, pod)
    decoded = NodeLock.decode(lock.encode())
    assert decoded == lock
    assert decoded.locked_at.utcoffset() == lock.locked_at.utcoffset()


@given(st.text())
def test_lock_fuzz(text: str) -> None:
    with contextlib.suppress(InputError):
        NodeLock.decode(text)


# --- handshake ------------------------------------------------------------------------------------
def test_handshake_formats() -> None:
    at = datetime(2024, 5, 1, 10, 0, 0)
    assert Handshake(HandshakeState.REQUESTING, at).encode() == "Requesting_2024-05-01 10:00:00"
    assert Handshake.decode("Requesting_2024-05-01 10:00:00") == Handshake(HandshakeState.REQUESTING, at)
    assert Handshake.decode("Deleted_2024-05-01 10:00:00").state is HandshakeState.DELETED
    go_time = "Reported 2024-05-01 10:00:00.123456789 +0000 UTC m=+12.345"
    assert Handshake.decode(go_time) == Handshake(HandshakeState.REPORTED, at)
    assert Handshake.decode("Reported soon") == Handshake(HandshakeState.REPORTED, None)
    assert Handshake.reported(at).encode() == "Reported 2024-05-01 10:00:00"


@pytest.mark.parametrize("text", ["", "Requesting", "Requesting_yesterday", "requesting_2024-05-01 10:00:00", "OK"])
def test_handshake_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        Handshake.decode(text)
    assert NODE_HANDSHAKE in str(info.value)


@given(
    st.sampled_from(list(HandshakeState)),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
)
def test_handshake_round_trip(state: HandshakeState, at: datetime) -> None:
    value = Handshake(state, at)
    assert Handshake.decode(value.encode()) == value


@given(st.text())
def test_handshake_fuzz(text: str) -> None:
    with contextlib.suppress(InputError):
        Handshake.decode(text)
