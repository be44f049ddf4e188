"""Fixtures for plugin tests: a short temp dir (unix socket paths must stay < 106 bytes), a fake kubelet,
and a factory for started DevicePluginServers that are always stopped."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hami_mig.plugin import (
    ContainerAllocation,
    Device,
    DevicePluginServer,
    DeviceSpec,
    Mount,
    MutableDeviceSource,
)
from hami_mig.testing.fake_kubelet import FakeKubelet

RESOURCE = "example.com/gpu"
SOCKET = "gpu.sock"


def make_devices(count: int, per_group: int = 2) -> list[Device]:
    """``count`` devices named d0.. packed ``per_group`` to a group, groups alternating NUMA nodes."""
    return [Device(f"d{i}", numa_node=(i // per_group) % 2, group=f"gpu{i // per_group}") for i in range(count)]


class EchoAllocator:
    """A trivial but real allocator: gives each container env/mount/device/CDI entries naming its IDs."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()
        self.started = threading.Event()

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        self.started.set()
        if self.delay:
            threading.Event().wait(self.delay)
        with self._lock:
            self.calls.append(list(device_ids))
        joined = ",".join(device_ids)
        return ContainerAllocation(
            envs={"VISIBLE_DEVICES": joined},
            mounts=(Mount("/usr/lib/x", "/host/lib/x", read_only=True),),
            devices=tuple(DeviceSpec(f"/dev/{i}", f"/dev/{i}", "rw") for i in device_ids),
            annotations={"example.com/devices": joined},
            cdi_devices=tuple(f"example.com/gpu={i}" for i in device_ids),
        )


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(plugin_dir)
    fake.start()
    yield fake
    fake.stop()


ServerFactory = Callable[..., DevicePluginServer]


@pytest.fixture
def make_server(plugin_dir: Path) -> Iterator[ServerFactory]:
    servers: list[DevicePluginServer] = []

    def factory(source: Any = None, allocator: Any = None, *, start: bool = True,
                resource: str = RESOURCE, socket: str = SOCKET, **kwargs: Any) -> DevicePluginServer:
        server = DevicePluginServer(resource, socket, source or MutableDeviceSource(make_devices(4)),
                                    allocator or EchoAllocator(), plugin_dir, **kwargs)
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.stop(1.0)
