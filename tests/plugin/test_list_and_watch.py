"""ListAndWatch as the kubelet sees it: full list at once, again on each change, never otherwise."""

from __future__ import annotations

import threading
import time

import grpc

from hami_mig.plugin import Device, MutableDeviceSource
from hami_mig.plugin.protocol import unix_address
from hami_mig.plugin.rpc import DevicePluginClient
from hami_mig.testing.fake_kubelet import FakeKubelet, ReportedDevice

from .conftest import RESOURCE, ServerFactory, make_devices


def ids(devices: tuple[ReportedDevice, ...]) -> list[str]:
    return [d.id for d in devices]


def test_initial_list_carries_health_and_topology(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource([Device("d0", numa_node=1, group="g"), Device("d1", healthy=False)])
    make_server(source)
    devices = kubelet.wait_for_devices(RESOURCE, lambda d: len(d) == 2, 5)
    assert devices == (ReportedDevice("d0", True, (1,)), ReportedDevice("d1", False, ()))
    assert kubelet.update_count(RESOURCE) == 1


def test_changes_are_sent_as_full_lists(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource(make_devices(3))
    make_server(source)
    kubelet.wait_for_devices(RESOURCE, lambda d: ids(d) == ["d0", "d1", "d2"], 5)

    source.set_health("d1", False)
    seen = kubelet.wait_for_devices(RESOURCE, lambda d: len(d) == 3 and not d[1].healthy, 5)
    assert [d.healthy for d in seen] == [True, False, True]

    source.set_devices([d for d in source.devices() if d.id != "d2"])
    kubelet.wait_for_devices(RESOURCE, lambda d: ids(d) == ["d0", "d1"], 5)

    source.set_devices([*source.devices(), Device("d9", numa_node=0)])
    seen = kubelet.wait_for_devices(RESOURCE, lambda d: ids(d) == ["d0", "d1", "d9"], 5)
    assert seen[2] == ReportedDevice("d9", True, (0,))

    source.set_health("d1", True)
    kubelet.wait_for_devices(RESOURCE, lambda d: all(x.healthy for x in d), 5)
    assert kubelet.update_count(RESOURCE) == 5


def test_no_message_without_a_visible_change(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource([Device("d0", group="a")])
    make_server(source)
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    source.set_devices([Device("d0", group="b")])  # group is not on the wire
    time.sleep(0.5)
    assert kubelet.update_count(RESOURCE) == 1


def test_many_streams_each_see_every_change_and_let_go(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource(make_devices(2))
    server = make_server(source)
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    channel = grpc.insecure_channel(unix_address(server.socket_path))
    client = DevicePluginClient(channel)
    streams = [client.list_and_watch() for _ in range(10)]
    assert all(len(next(s).devices) == 2 for s in streams)
    source.set_health("d0", False)
    assert all(next(s).devices[0].health == "Unhealthy" for s in streams)
    assert server.active_streams == 11 and source.subscriber_count == 11
    for stream in streams:
        stream.cancel()
    channel.close()
    deadline = time.monotonic() + 5
    while source.subscriber_count > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.subscriber_count == 1 and server.active_streams == 1  # only the kubelet's is left


def test_a_client_that_vanishes_releases_its_stream(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    """The grpcio pitfall: a stream blocked waiting for changes must notice its client went away."""
    source = MutableDeviceSource(make_devices(1))
    server = make_server(source)
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    for _ in range(20):  # more than any thread pool would survive if streams leaked
        channel = grpc.insecure_channel(unix_address(server.socket_path))
        next(DevicePluginClient(channel).list_and_watch())
        channel.close()  # no cancel: the connection just goes away
    deadline = time.monotonic() + 5
    while server.active_streams > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_streams == 1 and source.subscriber_count == 1
    assert kubelet.allocate(RESOURCE, ["d0"], timeout=5).container_responses


def test_streams_end_cleanly_on_stop(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server()
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    channel = grpc.insecure_channel(unix_address(server.socket_path))
    stream = DevicePluginClient(channel).list_and_watch()
    next(stream)
    outcome: list[object] = []

    def drain() -> None:
        try:
            outcome.append(list(stream))  # ends without error when the server closes the stream
        except grpc.RpcError as error:
            outcome.append(error.code())

    reader = threading.Thread(target=drain)
    reader.start()
    started = time.monotonic()
    server.stop(5)
    reader.join(5)
    assert outcome == [[]] and time.monotonic() - started < 2
    kubelet.wait_for_devices(RESOURCE, lambda d: not any(x.healthy for x in d), 5)
    assert not kubelet.stream_open(RESOURCE)
    channel.close()
