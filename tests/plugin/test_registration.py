"""Registration with a (fake) kubelet over real unix sockets: contents, socket, retries, refusals."""

from __future__ import annotations

import os
import stat
import time
from itertools import pairwise
from pathlib import Path

import grpc
import pytest

from hami_mig.plugin import (
    DevicePluginServer,
    InvalidResourceNameError,
    MutableDeviceSource,
    ServerStateError,
    SocketInUseError,
    SocketPathError,
)
from hami_mig.plugin.proto import api_pb2
from hami_mig.plugin.protocol import unix_address
from hami_mig.plugin.registration import Backoff
from hami_mig.plugin.rpc import RegistrationClient
from hami_mig.testing.fake_kubelet import FakeKubelet

from .conftest import RESOURCE, SOCKET, EchoAllocator, ServerFactory, make_devices


def test_registration_contents(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server()
    assert server.wait_registered(5)
    registration = kubelet.wait_for_registration(RESOURCE, 5)
    assert (registration.version, registration.endpoint, registration.resource_name) == ("v1beta1", SOCKET, RESOURCE)
    assert registration.get_preferred_allocation_available is True
    assert registration.pre_start_required is False
    assert server.registered and server.registration_count == 1
    assert kubelet.rejections == ()


def test_socket_is_served_with_restrictive_permissions(kubelet: FakeKubelet, make_server: ServerFactory,
                                                       plugin_dir: Path) -> None:
    server = make_server()
    assert server.socket_path == plugin_dir / SOCKET
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_custom_socket_mode(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server(socket_mode=0o660)
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o660


def test_serves_before_the_kubelet_exists_and_registers_when_it_appears(plugin_dir: Path,
                                                                        make_server: ServerFactory) -> None:
    server = make_server()
    assert server.socket_path.exists() and not server.wait_registered(0.3)
    # The kubelet's start deletes every socket, ours included: the plugin must serve again and register.
    with FakeKubelet(plugin_dir) as kubelet:
        kubelet.wait_for_registration(RESOURCE, 5)
        assert server.wait_registered(5)


def test_failed_registrations_are_retried_with_backoff(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    kubelet.fail_next_registrations(3)
    server = make_server(backoff=Backoff(initial=0.05, factor=2.0, maximum=1.0, jitter=0.0), poll_interval=0.02)
    kubelet.wait_for_registration(RESOURCE, 10)
    assert server.wait_registered(5)
    assert kubelet.register_attempts == 4
    times = [r.at for r in kubelet.rejections] + [kubelet.registrations[-1].at]
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2, gaps
    assert gaps[0] < gaps[2]


def test_registration_refused_forever_never_kills_the_server(kubelet: FakeKubelet,
                                                             make_server: ServerFactory) -> None:
    kubelet.fail_next_registrations(1000)
    server = make_server(backoff=Backoff(initial=0.01, maximum=0.05))
    assert kubelet.wait_for(lambda: len(kubelet.rejections) >= 5, 5)
    assert not server.registered
    # Still serving: the kubelet could dial it.
    channel = grpc.insecure_channel(unix_address(server.socket_path))
    grpc.channel_ready_future(channel).result(timeout=5)
    channel.close()


def test_constructor_rejects_what_the_kubelet_would(plugin_dir: Path) -> None:
    source = MutableDeviceSource(make_devices(1))
    with pytest.raises(InvalidResourceNameError, match="'gpu'"):
        DevicePluginServer("gpu", SOCKET, source, EchoAllocator(), plugin_dir)
    with pytest.raises(SocketPathError, match="bytes"):
        DevicePluginServer(RESOURCE, "s" * 120 + ".sock", source, EchoAllocator(), plugin_dir)
    with pytest.raises(SocketPathError, match="kubelet's own socket"):
        DevicePluginServer(RESOURCE, "kubelet.sock", source, EchoAllocator(), plugin_dir)
    with pytest.raises(SocketPathError, match="does not exist"):
        DevicePluginServer(RESOURCE, SOCKET, source, EchoAllocator(), plugin_dir / "missing").start()


def test_a_second_instance_does_not_steal_a_live_socket(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    first = make_server()
    assert first.wait_registered(5)
    with pytest.raises(SocketInUseError, match="one device plugin"):
        make_server()
    assert first.registered and first.socket_path.exists()


def test_a_stale_socket_file_is_replaced(kubelet: FakeKubelet, make_server: ServerFactory, plugin_dir: Path) -> None:
    import socket

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(plugin_dir / SOCKET))
    stale.close()  # a socket file nobody listens on, as left by a crashed plugin
    server = make_server()
    assert server.wait_registered(5)


def test_start_twice_is_an_error(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server()
    with pytest.raises(ServerStateError):
        server.start()
    server.stop(1)
    server.stop(1)  # idempotent


class TestFakeKubeletValidatesLikeTheKubelet:
    def register(self, kubelet: FakeKubelet, **fields: object) -> grpc.RpcError:
        request = api_pb2.RegisterRequest(version="v1beta1", endpoint=SOCKET, resource_name=RESOURCE)
        for key, value in fields.items():
            setattr(request, key, value)
        channel = grpc.insecure_channel(unix_address(kubelet.socket_path))
        try:
            RegistrationClient(channel).register(request, timeout=15)
        except grpc.RpcError as error:
            return error
        finally:
            channel.close()
        raise AssertionError("registration unexpectedly accepted")

    def test_version(self, kubelet: FakeKubelet) -> None:
        error = self.register(kubelet, version="v1alpha")
        assert error.code() == grpc.StatusCode.UNKNOWN
        assert "requested API version 'v1alpha' is not supported" in (error.details() or "")

    @pytest.mark.parametrize("name", ["gpu", "kubernetes.io/gpu", "example.com/bad name"])
    def test_resource_name(self, kubelet: FakeKubelet, name: str) -> None:
        error = self.register(kubelet, resource_name=name)
        assert f"the ResourceName {name!r} is invalid" in (error.details() or "")

    def test_endpoint_missing(self, kubelet: FakeKubelet) -> None:
        assert "No such file" in (self.register(kubelet, endpoint="nothing.sock").details() or "")

    def test_endpoint_outside_the_directory(self, kubelet: FakeKubelet) -> None:
        assert "socket file name inside" in (self.register(kubelet, endpoint="../x.sock").details() or "")

    def test_endpoint_not_a_socket(self, kubelet: FakeKubelet, plugin_dir: Path) -> None:
        (plugin_dir / "file.sock").write_text("")
        assert "not a unix socket" in (self.register(kubelet, endpoint="file.sock").details() or "")

    def test_endpoint_nobody_serves(self, plugin_dir: Path) -> None:
        import socket

        with FakeKubelet(plugin_dir, dial_timeout=0.5) as kubelet:
            dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            dead.bind(str(plugin_dir / "dead.sock"))
            dead.close()
            started = time.monotonic()
            assert "failed to dial" in (self.register(kubelet, endpoint="dead.sock").details() or "")
            assert time.monotonic() - started < 5
