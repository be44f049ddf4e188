"""A faithful stand-in for the kubelet's device manager, over real unix sockets.

It serves ``Registration`` on ``<directory>/kubelet.sock`` and behaves like the kubelet where a
plugin can tell: it validates RegisterRequest with the kubelet's rules, dials the plugin back within
Register (10 s budget), calls GetDevicePluginOptions, opens ListAndWatch with no deadline and keeps
the latest device list, marks every device unhealthy when that stream ends, and on (re)start deletes
every socket in the directory before creating a new ``kubelet.sock``. Used by tests and the demo.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from hami_mig.plugin.proto import api_pb2
from hami_mig.plugin.protocol import (
    HEALTHY,
    KUBELET_SOCKET,
    SUPPORTED_VERSIONS,
    UNHEALTHY,
    resource_name_problem,
    unix_address,
)
from hami_mig.plugin.rpc import DevicePluginClient, RegistrationServicerBase, ResponseStream, add_registration_servicer

logger = logging.getLogger(__name__)

DIAL_TIMEOUT = 10.0


class FakeKubeletError(RuntimeError):
    """Misuse of the fake kubelet, e.g. talking to a resource that is not registered."""


@dataclass(frozen=True)
class Registration:
    """One accepted Register call."""

    resource_name: str
    endpoint: str
    version: str
    pre_start_required: bool
    get_preferred_allocation_available: bool
    generation: int
    at: float


@dataclass(frozen=True)
class RejectedRegistration:
    """One refused Register call and the kubelet's reason."""

    resource_name: str
    endpoint: str
    version: str
    reason: str
    generation: int
    at: float


@dataclass(frozen=True)
class ReportedDevice:
    """A device as the kubelet last saw it."""

    id: str
    healthy: bool
    numa_nodes: tuple[int, ...] = ()

    @property
    def health(self) -> str:
        """The wire string: "Healthy" or "Unhealthy"."""
        return HEALTHY if self.healthy else UNHEALTHY


DevicesPredicate = Callable[[tuple[ReportedDevice, ...]], bool]


class _Endpoint:
    """The kubelet's connection to one registered plugin."""

    def __init__(self, registration: Registration, socket: Path, channel: grpc.Channel,
                 client: DevicePluginClient) -> None:
        self.registration = registration
        self.socket = socket
        self.channel = channel
        self.client = client
        self.devices: dict[str, ReportedDevice] = {}
        self.updates = 0
        self.stream: ResponseStream | None = None
        self.stream_open = False
        self.thread: threading.Thread | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.stream is not None:
            self.stream.cancel()
        # grpcio's Channel.close() lingers ~200 ms; the connection is already cut, so do not wait for it.
        threading.Thread(target=self.channel.close, name="fake-kubelet-close", daemon=True).start()


class _RegistrationService(RegistrationServicerBase):
    def __init__(self, kubelet: FakeKubelet) -> None:
        self._kubelet = kubelet

    def Register(self, request: api_pb2.RegisterRequest, context: grpc.ServicerContext) -> api_pb2.Empty:
        problem = self._kubelet._handle_register(request)
        if problem is not None:
            code, message = problem
            context.abort(code, message)
        return api_pb2.Empty()


class FakeKubelet:
    """The kubelet side of the device plugin protocol, for one device-plugins directory."""

    def __init__(self, directory: str | os.PathLike[str], *, dial_timeout: float = DIAL_TIMEOUT) -> None:
        self._dir = Path(directory).absolute()
        self._socket = self._dir / KUBELET_SOCKET
        self._dial_timeout = dial_timeout
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self._generation = 0
        self._endpoints: dict[str, _Endpoint] = {}
        self._registrations: list[Registration] = []
        self._rejections: list[RejectedRegistration] = []
        self._attempts = 0
        self._fail_next: list[tuple[grpc.StatusCode, str]] = []

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The device-plugins directory."""
        return self._dir

    @property
    def socket_path(self) -> Path:
        """Path of kubelet.sock."""
        return self._socket

    @property
    def generation(self) -> int:
        """How many times this kubelet has started; each start is a new kubelet process."""
        with self._cond:
            return self._generation

    @property
    def running(self) -> bool:
        """Whether kubelet.sock is being served."""
        with self._cond:
            return self._server is not None

    def start(self, *, clean_sockets: bool = True) -> None:
        """Starts like the kubelet: deletes every socket in the directory, then serves a new kubelet.sock.

        ``clean_sockets=False`` skips the deletion, to test plugins that notice only the new kubelet.sock.
        """
        with self._cond:
            if self._server is not None:
                raise FakeKubeletError("fake kubelet is already running")
            self._dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            removed = _remove_sockets(self._dir) if clean_sockets else []
            server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-kubelet"))
            add_registration_servicer(_RegistrationService(self), server)
            server.add_insecure_port(unix_address(self._socket))
            server.start()
            self._server = server
            self._generation += 1
            self._endpoints = {}
            self._cond.notify_all()
        logger.info("fake kubelet generation %d serving %s (removed %d stale sockets)",
                    self._generation, self._socket, len(removed))

    def stop(self) -> None:
        """Stops like a killed kubelet: kubelet.sock goes away and every plugin stream is cut."""
        with self._cond:
            server, self._server = self._server, None
            endpoints = list(self._endpoints.values())
        if server is not None:
            server.stop(0).wait()
        for endpoint in endpoints:
            endpoint.close()
        for endpoint in endpoints:
            if endpoint.thread is not None:
                endpoint.thread.join(5.0)
        with self._cond:
            self._cond.notify_all()

    def restart(self, *, clean_sockets: bool = True) -> None:
        """A kubelet restart: stop, then start (which deletes every socket and creates a new kubelet.sock)."""
        self.stop()
        self.start(clean_sockets=clean_sockets)

    def disconnect(self, resource: str) -> None:
        """Cuts the connection to one plugin while the kubelet stays up; its devices turn unhealthy."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
        if endpoint is None:
            raise FakeKubeletError(f"{resource} is not registered with this kubelet")
        endpoint.close()
        if endpoint.thread is not None:
            endpoint.thread.join(5.0)

    def __enter__(self) -> FakeKubelet:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- behaviour switches ------------------------------------------------------------------------

    def fail_next_registrations(self, count: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                                message: str = "fake kubelet: registration refused for the test") -> None:
        """Refuses the next ``count`` Register calls with ``code``, before any validation."""
        with self._cond:
            self._fail_next.extend([(code, message)] * count)

    # --- observations ------------------------------------------------------------------------------

    @property
    def registrations(self) -> tuple[Registration, ...]:
        """Every accepted registration, all generations, oldest first."""
        with self._cond:
            return tuple(self._registrations)

    @property
    def rejections(self) -> tuple[RejectedRegistration, ...]:
        """Every refused registration, oldest first."""
        with self._cond:
            return tuple(self._rejections)

    @property
    def register_attempts(self) -> int:
        """Register calls received, accepted or not."""
        with self._cond:
            return self._attempts

    def registration(self, resource: str) -> Registration | None:
        """The current generation's registration of ``resource``, if any."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
            return endpoint.registration if endpoint is not None else None

    def devices(self, resource: str) -> tuple[ReportedDevice, ...]:
        """The devices of ``resource`` as last reported (all unhealthy once its stream ended)."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
            return tuple(endpoint.devices.values()) if endpoint is not None else ()

    def update_count(self, resource: str) -> int:
        """ListAndWatch messages received from the current registration of ``resource``."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
            return endpoint.updates if endpoint is not None else 0

    def stream_open(self, resource: str) -> bool:
        """Whether the ListAndWatch stream of ``resource`` is alive."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
            return endpoint is not None and endpoint.stream_open

    def wait_for_registration(self, resource: str, timeout: float = 10.0, *,
                              after: Registration | None = None) -> Registration:
        """Waits for a connected registration of ``resource`` in this generation (newer than ``after``)."""
        def ready() -> bool:
            endpoint = self._endpoints.get(resource)
            return endpoint is not None and (after is None or endpoint.registration.at > after.at)

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"no registration of {resource} within {timeout} s; rejections: "
                                   f"{self._rejections[-3:]}")
            return self._endpoints[resource].registration

    def wait_for_devices(self, resource: str, predicate: DevicesPredicate | None = None,
                         timeout: float = 10.0) -> tuple[ReportedDevice, ...]:
        """Waits until the reported devices of ``resource`` satisfy ``predicate`` (default: any reported)."""
        check = predicate or (lambda devices: bool(devices))

        def ready() -> bool:
            endpoint = self._endpoints.get(resource)
            return endpoint is not None and endpoint.updates > 0 and check(tuple(endpoint.devices.values()))

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"devices of {resource} did not match within {timeout} s; last seen: "
                                   f"{self.devices(resource)}")
            return tuple(self._endpoints[resource].devices.values())

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Waits until ``condition()`` (called with the state lock held) is true; returns whether it became so."""
        with self._cond:
            return self._cond.wait_for(condition, timeout)

    # --- calling the plugin like the kubelet -------------------------------------------------------

    def client(self, resource: str) -> DevicePluginClient:
        """A client on the registered plugin's connection."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
            if endpoint is None or endpoint.closed:
                raise FakeKubeletError(f"{resource} is not registered with this kubelet")
            return endpoint.client

    def allocate(self, resource: str, ids: Sequence[str], timeout: float | None = None) -> api_pb2.AllocateResponse:
        """Allocate for one container, as the kubelet does; raises grpc.RpcError on failure."""
        request = api_pb2.AllocateRequest(container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=ids)])
        return self.client(resource).allocate(request, timeout=timeout)

    def get_preferred_allocation(self, resource: str, available: Iterable[str], must_include: Iterable[str],
                                 size: int, timeout: float | None = None) -> list[str]:
        """GetPreferredAllocation for one container; returns its device IDs."""
        request = api_pb2.PreferredAllocationRequest(container_requests=[
            api_pb2.ContainerPreferredAllocationRequest(
                available_deviceIDs=list(available), must_include_deviceIDs=list(must_include),
                allocation_size=size)
        ])
        response = self.client(resource).get_preferred_allocation(request, timeout=timeout)
        return list(response.container_responses[0].deviceIDs)

    def pre_start(self, resource: str, ids: Sequence[str], timeout: float = 30.0) -> api_pb2.PreStartContainerResponse:
        """PreStartContainer with the kubelet's 30 s timeout."""
        request = api_pb2.PreStartContainerRequest(devices_ids=ids)
        return self.client(resource).pre_start_container(request, timeout=timeout)

    # --- Register handling (runs on the kubelet's gRPC threads) -----------------------------------

    def _handle_register(self, request: api_pb2.RegisterRequest) -> tuple[grpc.StatusCode, str] | None:
        with self._cond:
            self._attempts += 1
            generation = self._generation
            if self._fail_next:
                code, message = self._fail_next.pop(0)
                return self._reject(request, generation, message, code)
        # The kubelet returns plain Go errors, which reach the plugin as UNKNOWN.
        if request.version not in SUPPORTED_VERSIONS:
            return self._reject(request, generation, f"requested API version {request.version!r} is not supported "
                                f"by kubelet. Supported versions are {list(SUPPORTED_VERSIONS)!r}")
        if resource_name_problem(request.resource_name) is not None:
            return self._reject(request, generation, f"the ResourceName {request.resource_name!r} is invalid")
        problem = self._endpoint_problem(request.endpoint)
        if problem is not None:
            return self._reject(request, generation, problem)

        socket = self._dir / request.endpoint
        channel = grpc.insecure_channel(unix_address(socket))
        client = DevicePluginClient(channel)
        try:
            grpc.channel_ready_future(channel).result(timeout=self._dial_timeout)
            options = client.get_device_plugin_options(timeout=self._dial_timeout)
        except (grpc.FutureTimeoutError, grpc.RpcError) as error:
            channel.close()
            return self._reject(request, generation, f"failed to dial device plugin at {socket}: {error!r}")

        registration = Registration(
            resource_name=request.resource_name, endpoint=request.endpoint, version=request.version,
            pre_start_required=options.pre_start_required,
            get_preferred_allocation_available=options.get_preferred_allocation_available,
            generation=generation, at=time.monotonic(),
        )
        endpoint = _Endpoint(registration, socket, channel, client)
        with self._cond:
            if self._server is None or self._generation != generation:
                channel.close()
                return grpc.StatusCode.UNAVAILABLE, "kubelet is shutting down"
            old = self._endpoints.get(request.resource_name)
            self._endpoints[request.resource_name] = endpoint
            self._registrations.append(registration)
            endpoint.stream = client.list_and_watch()
            endpoint.stream_open = True
            endpoint.thread = threading.Thread(target=self._watch, args=(endpoint,), daemon=True,
                                               name=f"fake-kubelet-watch-{request.resource_name}")
            endpoint.thread.start()
            self._cond.notify_all()
        if old is not None:
            old.close()
        logger.info("fake kubelet: registered %s at %s", request.resource_name, socket)
        return None

    def _endpoint_problem(self, endpoint: str) -> str | None:
        if not endpoint or "/" in endpoint or endpoint in (".", ".."):
            return f"endpoint {endpoint!r} must be a socket file name inside {self._dir}"
        try:
            mode = os.stat(self._dir / endpoint).st_mode
        except OSError as error:
            return f"endpoint {endpoint!r}: {error.strerror} in {self._dir}"
        if not stat.S_ISSOCK(mode):
            return f"endpoint {endpoint!r} in {self._dir} is not a unix socket"
        return None

    def _reject(self, request: api_pb2.RegisterRequest, generation: int, reason: str,
                code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> tuple[grpc.StatusCode, str]:
        logger.info("fake kubelet: rejected registration of %r: %s", request.resource_name, reason)
        with self._cond:
            self._rejections.append(RejectedRegistration(request.resource_name, request.endpoint, request.version,
                                                         reason, generation, time.monotonic()))
            self._cond.notify_all()
        return code, reason

    def _watch(self, endpoint: _Endpoint) -> None:
        assert endpoint.stream is not None
        resource = endpoint.registration.resource_name
        try:
            for response in endpoint.stream:
                devices = {d.ID: _reported(d) for d in response.devices}
                with self._cond:
                    endpoint.devices = devices
                    endpoint.updates += 1
                    self._cond.notify_all()
        except grpc.RpcError as error:
            if not endpoint.closed:
                logger.info("fake kubelet: ListAndWatch of %s failed: %s", resource, _describe(error))
        finally:
            with self._cond:
                endpoint.stream_open = False
                # Like the kubelet: a plugin whose stream ended has all its devices unhealthy.
                endpoint.devices = {k: replace(v, healthy=False) for k, v in endpoint.devices.items()}
                self._cond.notify_all()
            logger.info("fake kubelet: ListAndWatch of %s ended", resource)


def _reported(device: api_pb2.Device) -> ReportedDevice:
    return ReportedDevice(id=device.ID, healthy=device.health == HEALTHY,
                          numa_nodes=tuple(node.ID for node in device.topology.nodes))


def _describe(error: Any) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return f"{getattr(code, 'name', code)}: {details}"


def _remove_sockets(directory: Path) -> list[Path]:
    """Deletes every unix socket directly in ``directory``, as the kubelet does when it starts."""
    removed = []
    for entry in directory.iterdir():
        try:
            if stat.S_ISSOCK(entry.lstat().st_mode):
                entry.unlink()
                removed.append(entry)
        except FileNotFoundError:
            continue
    return removed
