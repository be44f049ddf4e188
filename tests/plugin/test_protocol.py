"""Name and path rules shared by the plugin and the fake kubelet, and the in-memory device sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from hami_mig.plugin import Device, DeviceError, MutableDeviceSource, StaticDeviceSource
from hami_mig.plugin.protocol import (
    InvalidResourceNameError,
    SocketPathError,
    resource_name_problem,
    socket_path,
    unix_address,
    validate_resource_name,
)
from hami_mig.plugin.registration import Backoff


@pytest.mark.parametrize("name", ["example.com/gpu", "nvidia.com/gpu", "hami.io/mig-1g.10gb", "a/b", "x.y/A_b.c-D",
                                  "example.com/" + "a" * 63])
def test_valid_resource_names(name: str) -> None:
    assert resource_name_problem(name) is None
    assert validate_resource_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "kubernetes.io/gpu", "foo.kubernetes.io/gpu", "requests.example.com/gpu",
                                  "/gpu", "example.com/", "example.com/a/b", "Example.com/gpu", "exa_mple.com/gpu",
                                  "example.com/-gpu", "example.com/gpu-", "example.com/g pu",
                                  "example.com/" + "a" * 64, "a" * 250 + ".com/gpu"])
def test_invalid_resource_names(name: str) -> None:
    assert resource_name_problem(name) is not None
    with pytest.raises(InvalidResourceNameError, match="is invalid"):
        validate_resource_name(name)


def test_socket_paths() -> None:
    assert socket_path("/tmp/x", "a.sock") == Path("/tmp/x/a.sock")
    assert unix_address(Path("/tmp/x/a.sock")) == "unix:///tmp/x/a.sock"
    assert socket_path("/tmp/" + "x" * 93, "a.sock")  # 105 bytes: the longest grpcio binds
    with pytest.raises(SocketPathError, match="106 bytes"):
        socket_path("/tmp/" + "x" * 94, "a.sock")
    for bad in ("", "a/b.sock", "..", "kubelet.sock"):
        with pytest.raises(SocketPathError):
            socket_path("/tmp/x", bad)
    with pytest.raises(SocketPathError, match="absolute"):
        unix_address(Path("rel.sock"))


def test_device_validation() -> None:
    assert Device("a" * 63).healthy
    for bad in ("", "a" * 64, "has space", "tab\t"):
        with pytest.raises(DeviceError):
            Device(bad)
    with pytest.raises(DeviceError, match="numa_node"):
        Device("d0", numa_node=-1)


def test_sources_reject_duplicate_ids() -> None:
    with pytest.raises(DeviceError, match="'d0' appears more than once"):
        StaticDeviceSource([Device("d0"), Device("d0")])
    source = MutableDeviceSource()
    with pytest.raises(DeviceError, match="more than once"):
        source.set_devices([Device("d1"), Device("d1")])
    assert source.devices() == ()


def test_mutable_source_notifies_only_on_change() -> None:
    source = MutableDeviceSource([Device("d0")])
    calls: list[int] = []
    unsubscribe = source.subscribe(lambda: calls.append(1))
    assert source.set_devices([Device("d0")]) is False
    assert source.set_health("d0", True) is False
    assert calls == []
    assert source.set_health("d0", False) is True
    assert source.devices() == (Device("d0", healthy=False),)
    assert source.set_devices([Device("d0"), Device("d1")]) is True
    assert len(calls) == 2
    with pytest.raises(DeviceError, match="unknown device ID 'nope'"):
        source.set_health("nope", True)
    unsubscribe()
    source.set_devices([])
    assert len(calls) == 2 and source.subscriber_count == 0


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    source = MutableDeviceSource()
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    source.subscribe(broken)
    source.subscribe(lambda: seen.append("ok"))
    source.set_devices([Device("d0")])
    assert seen == ["ok"]


def test_backoff_grows_is_capped_and_jittered() -> None:
    import random

    backoff = Backoff(initial=0.1, factor=2.0, maximum=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(1.0, 0.1 * 2 ** (n - 1))
        assert base * 0.5 <= delay <= base
    assert max(delays) <= 1.0
    assert len({round(d, 6) for d in delays}) == len(delays)
    with pytest.raises(ValueError):
        Backoff(initial=0)
