"""The DevicePlugin gRPC service: device streams, preferred allocation and Allocate, on asyncio.

asyncio keeps thousands of idle ListAndWatch streams from tying up threads, so Allocate is never
starved; allocator calls run on a small thread pool because allocators may block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from typing import Any, cast

import grpc
import grpc.aio

from .allocator import AllocationError, Allocator, ContainerAllocation, PreferenceProvider
from .devices import Device, DeviceSource
from .preferred import choose_preferred, is_valid_preference
from .proto import api_pb2
from .rpc import DevicePluginServicerBase
from .validation import validate_allocate_request
from .wire import WireKey, allocation_to_proto, list_and_watch_response, wire_key

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

# How often a stream retries reading a source that raised.
SOURCE_RETRY_SECONDS = 1.0


class StreamTracker:
    """Counts open ListAndWatch streams across servicers, so the server can notice the kubelet's is gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._opened = 0
        self._last_change = time.monotonic()

    def opened(self) -> None:
        """A stream started."""
        with self._lock:
            self._active += 1
            self._opened += 1
            self._last_change = time.monotonic()

    def closed(self) -> None:
        """A stream ended, for whatever reason."""
        with self._lock:
            self._active -= 1
            self._last_change = time.monotonic()

    @property
    def active(self) -> int:
        """Streams open right now."""
        with self._lock:
            return self._active

    @property
    def opened_total(self) -> int:
        """Streams ever opened."""
        with self._lock:
            return self._opened

    def idle_for(self) -> float:
        """Seconds since the last stream opened or closed, or 0.0 while one is open."""
        with self._lock:
            return 0.0 if self._active else time.monotonic() - self._last_change


class DevicePluginServicer(DevicePluginServicerBase):
    """Serves one DevicePlugin socket; the server makes a fresh one each time it re-creates the socket."""

    def __init__(
        self,
        *,
        resource_name: str,
        source: DeviceSource,
        allocator: Allocator,
        executor: Executor,
        options: api_pb2.DevicePluginOptions,
        streams: StreamTracker,
        preferred_timeout: float = 5.0,
    ) -> None:
        self._resource_name = resource_name
        self._source = source
        self._allocator = allocator
        self._executor = executor
        self._options = options
        self._streams = streams
        self._preferred_timeout = preferred_timeout
        self._closing = False
        self._wakers: set[asyncio.Event] = set()

    def close_streams(self) -> None:
        """Ends every ListAndWatch stream cleanly; call on the event loop before stopping the server."""
        self._closing = True
        for wake in self._wakers:
            wake.set()

    async def GetDevicePluginOptions(self, request: api_pb2.Empty, context: Context) -> api_pb2.DevicePluginOptions:
        """The options sent at registration."""
        options = api_pb2.DevicePluginOptions()
        options.CopyFrom(self._options)
        return options

    async def ListAndWatch(self, request: api_pb2.Empty, context: Context) -> AsyncIterator[
            api_pb2.ListAndWatchResponse]:
        """Sends the full list now and after every visible change, until closed or the client leaves."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_change() -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: the stream is gone with it
                loop.call_soon_threadsafe(wake.set)

        unsubscribe = self._source.subscribe(on_change)
        # Belt and braces: grpc.aio cancels a stream whose client left, and this wakes it too.
        context.add_done_callback(cast("grpc.aio.DoneCallback[Any, Any]", lambda _ctx: wake.set()))
        self._wakers.add(wake)
        self._streams.opened()
        peer = context.peer()
        logger.info("ListAndWatch for %s opened by %s", self._resource_name, peer)
        sent: WireKey | None = None
        try:
            while not self._closing and not context.done():
                wake.clear()
                try:
                    devices: tuple[Device, ...] | None = tuple(self._source.devices())
                except Exception:
                    logger.exception("device source for %s failed; retrying", self._resource_name)
                    devices = None
                if devices is not None and wire_key(devices) != sent:
                    yield list_and_watch_response(devices)
                    sent = wire_key(devices)
                    logger.debug("sent %d devices of %s to %s", len(devices), self._resource_name, peer)
                if self._closing:
                    break
                timeout = SOURCE_RETRY_SECONDS if devices is None else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
        finally:
            unsubscribe()
            self._wakers.discard(wake)
            self._streams.closed()
            logger.info("ListAndWatch for %s to %s ended", self._resource_name, peer)

    async def GetPreferredAllocation(self, request: api_pb2.PreferredAllocationRequest,
                                     context: Context) -> api_pb2.PreferredAllocationResponse:
        """Advice only: answers every container, with an empty list rather than an error when unsure."""
        try:
            devices = {d.id: d for d in self._source.devices()}
        except Exception:
            logger.exception("device source for %s failed during GetPreferredAllocation", self._resource_name)
            devices = {}
        responses = []
        for container in request.container_requests:
            ids = await self._preferred(list(container.available_deviceIDs), list(container.must_include_deviceIDs),
                                        container.allocation_size, devices)
            responses.append(api_pb2.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    async def Allocate(self, request: api_pb2.AllocateRequest, context: Context) -> api_pb2.AllocateResponse:
        """Validates the request, hands each container to the allocator, maps its errors to status codes."""
        try:
            devices = {d.id: d for d in self._source.devices()}
            per_container = validate_allocate_request(request, devices, self._resource_name)
        except AllocationError as error:
            logger.warning("rejected Allocate for %s: %s", self._resource_name, error)
            await context.abort(error.code, str(error))
        except Exception as error:
            logger.exception("device source for %s failed during Allocate", self._resource_name)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"cannot read the devices of {self._resource_name}: {error}; retry later")
        loop = asyncio.get_running_loop()
        responses = []
        for index, ids in enumerate(per_container):
            try:
                allocation = await loop.run_in_executor(self._executor, self._allocator.allocate, ids)
                if not isinstance(allocation, ContainerAllocation):
                    raise TypeError(f"allocator returned {type(allocation).__name__}, not ContainerAllocation")
                responses.append(allocation_to_proto(allocation))
            except AllocationError as error:
                logger.warning("Allocate %s of %s failed (%s): %s", ids, self._resource_name, error.code.name, error)
                await context.abort(error.code, str(error))
            except Exception as error:
                logger.exception("allocator crashed on %s of %s", ids, self._resource_name)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"allocating {ids} of {self._resource_name} failed unexpectedly "
                    f"({type(error).__name__}: {error}); see the device plugin log",
                )
            logger.info("allocated %s of %s (container %d)", ids, self._resource_name, index)
        return api_pb2.AllocateResponse(container_responses=responses)

    async def PreStartContainer(self, request: api_pb2.PreStartContainerRequest,
                                context: Context) -> api_pb2.PreStartContainerResponse:
        """Nothing to do before start: registration says pre_start_required=False."""
        return api_pb2.PreStartContainerResponse()

    async def _preferred(self, available: list[str], must_include: list[str], size: int,
                         devices: dict[str, Device]) -> list[str]:
        if isinstance(self._allocator, PreferenceProvider):
            provider = self._allocator
            try:
                loop = asyncio.get_running_loop()
                suggested = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, provider.preferred, available, must_include, size),
                    self._preferred_timeout,
                )
            except Exception:
                logger.exception("allocator's preferred() failed; using the default policy")
                suggested = None
            if suggested is not None:
                result: Sequence[str] = list(suggested)
                if is_valid_preference(result, available, must_include, size):
                    return list(result)
                logger.warning("allocator's preferred() answered %s, not %d of %s including %s; using the "
                               "default policy", result, size, available, must_include)
        try:
            return choose_preferred(available, must_include, size, devices)
        except Exception:
            logger.exception("preferred allocation policy failed; answering with no preference")
            return []
