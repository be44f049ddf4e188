"""The plugin socket is 0600 from the instant it can be reached at its path, whatever the process umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from hami_mig.plugin import DevicePluginServer, MutableDeviceSource
from hami_mig.plugin.protocol import MAX_SOCKET_PATH_BYTES

from .conftest import RESOURCE, EchoAllocator, make_devices


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000, the worst case: a socket bound in place would be 0777."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


class BindWatch:
    """What the socket's final path looks like right after gRPC's real bind returns (mode, or None if absent)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.seen: list[int | None] = []

    def look(self) -> None:
        assert self.path is not None
        try:
            self.seen.append(stat.S_IMODE(os.lstat(self.path).st_mode))
        except FileNotFoundError:
            self.seen.append(None)


@pytest.fixture
def bind_watch(monkeypatch: pytest.MonkeyPatch) -> BindWatch:
    watch = BindWatch()
    real_server = grpc.aio.server

    def server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        srv = real_server(*args, **kwargs)
        real_add = srv.add_insecure_port

        def add_insecure_port(address: str) -> int:
            port = real_add(address)
            watch.look()
            return port

        srv.add_insecure_port = add_insecure_port  # type: ignore[method-assign]
        return srv

    monkeypatch.setattr(grpc.aio, "server", server)
    return watch


def serve(directory: Path, socket: str, watch: BindWatch) -> DevicePluginServer:
    server = DevicePluginServer(RESOURCE, socket, MutableDeviceSource(make_devices(2)), EchoAllocator(), directory)
    watch.path = server.socket_path
    server.start()
    return server


@pytest.mark.usefixtures("open_umask")
def test_socket_is_never_reachable_with_a_looser_mode(tmp_path: Path, bind_watch: BindWatch) -> None:
    server = serve(tmp_path, "gpu.sock", bind_watch)
    try:
        assert bind_watch.seen, "gRPC's bind was not observed"
        for mode in bind_watch.seen:
            assert mode in (None, 0o600), f"the socket was reachable with mode {mode:o} right after the bind"
        info = os.stat(server.socket_path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.sock"], "the staging directory was left behind"
        assert os.umask(0) == 0, "the process umask was changed"
    finally:
        server.stop(1.0)
    assert not server.socket_path.exists()


@pytest.mark.usefixtures("open_umask")
def test_a_directory_too_long_to_stage_in_binds_under_a_narrow_umask(tmp_path: Path, bind_watch: BindWatch) -> None:
    name = "p.sock"
    room = MAX_SOCKET_PATH_BYTES - len(os.fsencode(tmp_path)) - len(name) - 2  # final path exactly at the limit
    assert room > 0
    directory = tmp_path / ("d" * room)
    directory.mkdir()
    assert len(os.fsencode(directory / name)) == MAX_SOCKET_PATH_BYTES
    server = serve(directory, name, bind_watch)
    try:
        assert bind_watch.seen and all(mode == 0o600 for mode in bind_watch.seen), bind_watch.seen
        assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
        assert sorted(p.name for p in directory.iterdir()) == [name]
        assert os.umask(0) == 0, "the umask was not restored after the bind"
    finally:
        server.stop(1.0)
