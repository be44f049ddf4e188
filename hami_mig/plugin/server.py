"""DevicePluginServer: serves a resource on its socket, keeps it registered with the kubelet, stops cleanly.

All gRPC work runs on one asyncio loop in a background thread; the public methods are blocking and
thread-safe so a synchronous agent can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
import grpc.aio

from .allocator import Allocator
from .devices import DeviceSource
from .proto import api_pb2
from .protocol import (
    DEFAULT_KUBELET_DIR,
    KUBELET_SOCKET,
    SocketPathError,
    socket_path,
    unix_address,
    validate_resource_name,
)
from .registration import DEFAULT_BACKOFF, Backoff, RegistrationError, register_request, register_with_kubelet
from .rpc import add_device_plugin_servicer
from .servicer import DevicePluginServicer, StreamTracker
from .sockfile import bind_private

logger = logging.getLogger(__name__)

SocketIdentity = tuple[int, int, int]


class ServerStateError(RuntimeError):
    """start() or stop() called in the wrong order."""


class SocketInUseError(SocketPathError):
    """Another live process serves our socket; binding would silently steal it (one instance per node)."""


class DevicePluginServer:
    """A kubelet device plugin for one extended resource; knows nothing about what the devices are."""

    def __init__(
        self,
        resource_name: str,
        socket_name: str,
        source: DeviceSource,
        allocator: Allocator,
        kubelet_dir: str | os.PathLike[str] = DEFAULT_KUBELET_DIR,
        *,
        socket_mode: int = 0o600,
        poll_interval: float = 0.1,
        backoff: Backoff = DEFAULT_BACKOFF,
        register_timeout: float = 15.0,
        allocate_workers: int = 4,
        stream_loss_grace: float = 2.0,
        restart_grace: float = 0.5,
        preferred_allocation: bool = True,
    ) -> None:
        self._resource_name = validate_resource_name(resource_name)
        self._socket_name = socket_name
        self._socket_path = socket_path(kubelet_dir, socket_name)
        self._kubelet_socket = self._socket_path.parent / KUBELET_SOCKET
        self._source = source
        self._allocator = allocator
        self._socket_mode = socket_mode
        self._poll_interval = poll_interval
        self._backoff = backoff
        self._register_timeout = register_timeout
        self._allocate_workers = allocate_workers
        self._stream_loss_grace = stream_loss_grace
        self._restart_grace = restart_grace
        self._options = api_pb2.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=preferred_allocation
        )
        self._streams = StreamTracker()
        self._state = threading.Condition()
        self._registered = False
        self._registrations = 0
        self._lifecycle = threading.Lock()
        self._started = False
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._server: grpc.aio.Server | None = None
        self._servicer: DevicePluginServicer | None = None
        self._socket_id: SocketIdentity | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def resource_name(self) -> str:
        """The extended resource this server advertises."""
        return self._resource_name

    @property
    def socket_path(self) -> Path:
        """Absolute path of the socket the kubelet dials."""
        return self._socket_path

    @property
    def registered(self) -> bool:
        """True while the current kubelet has accepted our registration (readiness)."""
        with self._state:
            return self._registered

    @property
    def registration_count(self) -> int:
        """Successful registrations so far, re-registrations included."""
        with self._state:
            return self._registrations

    @property
    def active_streams(self) -> int:
        """ListAndWatch streams open right now."""
        return self._streams.active

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Blocks until registered or ``timeout`` seconds pass; returns whether it is registered."""
        with self._state:
            return self._state.wait_for(lambda: self._registered, timeout)

    def start(self, timeout: float = 10.0) -> None:
        """Serves the socket (before any Register) and starts registering and watching in the background."""
        with self._lifecycle:
            if self._started:
                raise ServerStateError(f"device plugin server for {self._resource_name} was already started")
            directory = self._socket_path.parent
            if not directory.is_dir():
                raise SocketPathError(f"kubelet device plugin directory {directory} does not exist; mount it "
                                      "into the plugin's container")
            if _socket_accepts(self._socket_path):
                raise SocketInUseError(f"{self._socket_path} is served by another live process; run one device "
                                       f"plugin for {self._resource_name} per node")
            self._started = True
            self._executor = ThreadPoolExecutor(self._allocate_workers, thread_name_prefix="plugin-allocate")
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="plugin-grpc", daemon=True)
            self._thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._start_async(), loop).result(timeout)
            except BaseException:
                self._shutdown_loop()
                raise

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting RPCs, ends streams, lets in-flight Allocates finish for ``grace`` s, removes the socket."""
        with self._lifecycle:
            if not self._started or self._stopped:
                return
            self._stopped = True
            loop = self._loop
            if loop is not None and loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._stop_async(grace), loop)
                try:
                    future.result(grace + 10.0)
                except Exception:
                    logger.exception("error while stopping the device plugin server for %s", self._resource_name)
            self._shutdown_loop()
            logger.info("device plugin server for %s stopped", self._resource_name)

    def __enter__(self) -> DevicePluginServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- loop thread ---------------------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10.0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._set_registered(False)

    async def _start_async(self) -> None:
        await self._serve()
        self._supervisor = asyncio.create_task(self._supervise(), name="plugin-supervisor")

    async def _stop_async(self, grace: float) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._set_registered(False)
        await self._stop_server(grace)

    async def _serve(self) -> None:
        assert self._executor is not None
        servicer = DevicePluginServicer(
            resource_name=self._resource_name,
            source=self._source,
            allocator=self._allocator,
            executor=self._executor,
            options=self._options,
            streams=self._streams,
        )
        server = grpc.aio.server()
        add_device_plugin_servicer(servicer, server)
        try:  # never reachable at its path with a looser mode than asked, whatever the umask
            bind_private(self._socket_path, self._socket_mode, lambda p: server.add_insecure_port(unix_address(p)))
        except (RuntimeError, OSError) as error:
            raise SocketPathError(f"cannot bind {self._socket_path}: {error}") from error
        await server.start()
        self._server, self._servicer = server, servicer
        self._socket_id = _identity(self._socket_path)
        logger.info("serving %s on %s", self._resource_name, unix_address(self._socket_path))

    async def _stop_server(self, grace: float) -> None:
        server, servicer, identity = self._server, self._servicer, self._socket_id
        self._server, self._servicer, self._socket_id = None, None, None
        if servicer is not None:
            servicer.close_streams()
        if server is not None:
            # grpcio deletes the socket path on stop even if someone else now owns it, so a new
            # server is only ever bound after this returns.
            await server.stop(grace)
        if identity is not None and _identity(self._socket_path) == identity:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()

    async def _supervise(self) -> None:
        """Keeps the socket served and registered with whichever kubelet is current; never gives up."""
        watch = _WatchState(seen_kubelet=_identity(self._kubelet_socket))
        while True:
            try:
                await self._keep_serving(watch)
                kubelet = self._notice_kubelet(watch)
                if not self._registered and self._server is not None:
                    await self._try_register(watch, kubelet)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("device plugin supervisor error for %s; continuing", self._resource_name)
            await asyncio.sleep(self._poll_interval)

    async def _keep_serving(self, watch: _WatchState) -> None:
        """Serves a fresh socket when ours was deleted (the kubelet wipes them when it restarts)."""
        now = asyncio.get_running_loop().time()
        if (self._server is not None and _identity(self._socket_path) == self._socket_id) or now < watch.next_serve:
            return
        if self._server is not None:
            logger.warning("socket %s was removed or replaced (kubelet restart?); serving it again", self._socket_path)
        self._set_registered(False)
        try:
            await self._stop_server(self._restart_grace)
            await self._serve()
        except Exception as error:
            watch.serve_failures += 1
            delay = self._backoff.delay(watch.serve_failures)
            watch.next_serve = now + delay
            logger.error("cannot serve %s (attempt %d): %s; retrying in %.2f s",
                         self._socket_path, watch.serve_failures, error, delay)
        else:
            watch.serve_failures, watch.next_register = 0, 0.0

    def _notice_kubelet(self, watch: _WatchState) -> SocketIdentity | None:
        """Drops the registration when the kubelet restarted or its stream is gone; returns kubelet.sock's id."""
        kubelet = _identity(self._kubelet_socket)
        if kubelet != watch.seen_kubelet:
            watch.seen_kubelet = kubelet
            if kubelet is not None:
                logger.info("new %s appeared", self._kubelet_socket)
                watch.register_failures, watch.next_register = 0, 0.0
        if self._registered and kubelet != watch.registered_kubelet:
            logger.warning("kubelet restarted (%s replaced); registering %s again",
                           self._kubelet_socket, self._resource_name)
            self._set_registered(False)
        if (self._registered and self._streams.opened_total > watch.opened_before_register
                and self._streams.idle_for() >= self._stream_loss_grace):
            # The kubelet never reopens a stream that ended; only a new registration brings it back.
            logger.warning("the kubelet's ListAndWatch stream for %s ended; registering again", self._resource_name)
            self._set_registered(False)
        return kubelet

    async def _try_register(self, watch: _WatchState, kubelet: SocketIdentity | None) -> None:
        """One Register attempt when the kubelet is there and the backoff allows it."""
        loop = asyncio.get_running_loop()
        if kubelet is None:
            if not watch.waiting_logged:
                logger.info("waiting for %s to register %s", self._kubelet_socket, self._resource_name)
                watch.waiting_logged = True
            return
        if loop.time() < watch.next_register:
            return
        watch.waiting_logged = False
        watch.opened_before_register = self._streams.opened_total
        request = register_request(self._resource_name, self._socket_name, self._options)
        try:
            await register_with_kubelet(self._kubelet_socket, request, self._register_timeout)
        except RegistrationError as error:
            watch.register_failures += 1
            delay = self._backoff.delay(watch.register_failures)
            watch.next_register = loop.time() + delay
            logger.warning("registration attempt %d failed: %s; retrying in %.2f s",
                           watch.register_failures, error, delay)
            return
        watch.registered_kubelet, watch.register_failures = kubelet, 0
        self._set_registered(True)
        logger.info("registered %s with the kubelet (endpoint %s)", self._resource_name, self._socket_name)

    def _set_registered(self, value: bool) -> None:
        with self._state:
            if value:
                self._registrations += 1
            self._registered = value
            self._state.notify_all()


@dataclass
class _WatchState:
    """What the supervisor remembers between ticks."""

    seen_kubelet: SocketIdentity | None = None
    registered_kubelet: SocketIdentity | None = None
    opened_before_register: int = 0
    serve_failures: int = 0
    register_failures: int = 0
    next_serve: float = 0.0
    next_register: float = 0.0
    waiting_logged: bool = False


def _identity(path: Path) -> SocketIdentity | None:
    """Who ``path`` is if it is a socket, else None; a change means someone re-created it.

    The inode alone is not enough: a deleted socket's inode number is often reused at once.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns) if stat.S_ISSOCK(info.st_mode) else None


def _socket_accepts(path: Path) -> bool:
    """Whether a live server answers on ``path`` (a stale socket file from a dead process does not)."""
    if _identity(path) is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
