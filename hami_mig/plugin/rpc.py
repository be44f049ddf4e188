"""Typed entry points into the generated gRPC module, which has no type information of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import grpc
import grpc.aio

from .proto import api_pb2, api_pb2_grpc

DevicePluginServicerBase = api_pb2_grpc.DevicePluginServicer
RegistrationServicerBase = api_pb2_grpc.RegistrationServicer

REGISTER_METHOD = "/v1beta1.Registration/Register"
DEVICE_PLUGIN_METHODS = tuple(
    f"/v1beta1.DevicePlugin/{name}"
    for name in ("GetDevicePluginOptions", "ListAndWatch", "GetPreferredAllocation", "Allocate", "PreStartContainer")
)


class ResponseStream(Protocol):
    """A server-streaming call on a sync channel: iterate it, cancel it from any thread."""

    def __iter__(self) -> Iterator[api_pb2.ListAndWatchResponse]: ...

    def __next__(self) -> api_pb2.ListAndWatchResponse: ...

    def cancel(self) -> bool: ...


def add_device_plugin_servicer(servicer: DevicePluginServicerBase, server: grpc.Server | grpc.aio.Server) -> None:
    """Serves ``servicer`` as v1beta1.DevicePlugin on ``server`` (sync or asyncio)."""
    api_pb2_grpc.add_DevicePluginServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


def add_registration_servicer(servicer: RegistrationServicerBase, server: grpc.Server | grpc.aio.Server) -> None:
    """Serves ``servicer`` as v1beta1.Registration on ``server`` (the kubelet side)."""
    api_pb2_grpc.add_RegistrationServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


async def register(channel: grpc.aio.Channel, request: api_pb2.RegisterRequest, timeout: float) -> None:
    """Calls Registration.Register on the kubelet; raises grpc.aio.AioRpcError on refusal."""
    stub = api_pb2_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]
    await stub.Register(request, timeout=timeout)


class RegistrationClient:
    """Blocking Registration client, for tools and tests that play the plugin side."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = api_pb2_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]

    def register(self, request: api_pb2.RegisterRequest, timeout: float | None = None) -> None:
        """Registers with the kubelet; raises grpc.RpcError on refusal."""
        self._stub.Register(request, timeout=timeout)


class DevicePluginClient:
    """Blocking DevicePlugin client, for the fake kubelet, tests and benchmarks."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = api_pb2_grpc.DevicePluginStub(channel)  # type: ignore[no-untyped-call]

    def get_device_plugin_options(self, timeout: float | None = None) -> api_pb2.DevicePluginOptions:
        """The options the plugin serves."""
        return cast(api_pb2.DevicePluginOptions, self._stub.GetDevicePluginOptions(api_pb2.Empty(), timeout=timeout))

    def list_and_watch(self) -> ResponseStream:
        """Opens ListAndWatch with no deadline, as the kubelet does."""
        return cast(ResponseStream, self._stub.ListAndWatch(api_pb2.Empty()))

    def get_preferred_allocation(self, request: api_pb2.PreferredAllocationRequest,
                                 timeout: float | None = None) -> api_pb2.PreferredAllocationResponse:
        """Asks which devices the plugin would rather give."""
        return cast(api_pb2.PreferredAllocationResponse, self._stub.GetPreferredAllocation(request, timeout=timeout))

    def allocate(self, request: api_pb2.AllocateRequest, timeout: float | None = None) -> api_pb2.AllocateResponse:
        """Allocates devices; raises grpc.RpcError with the plugin's status code on failure."""
        return cast(api_pb2.AllocateResponse, self._stub.Allocate(request, timeout=timeout))

    def pre_start_container(self, request: api_pb2.PreStartContainerRequest,
                            timeout: float | None = None) -> api_pb2.PreStartContainerResponse:
        """Runs the pre-start hook."""
        return cast(api_pb2.PreStartContainerResponse, self._stub.PreStartContainer(request, timeout=timeout))
