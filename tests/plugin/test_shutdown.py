"""Graceful shutdown: in-flight Allocates finish, streams end, the socket goes; SIGTERM exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from hami_mig.plugin.proto import api_pb2
from hami_mig.testing.fake_kubelet import FakeKubelet

from .conftest import RESOURCE, SOCKET, EchoAllocator, ServerFactory

ROOT = Path(__file__).resolve().parents[2]


def allocate_in_background(kubelet: FakeKubelet, ids: list[str]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(kubelet.allocate(RESOURCE, ids, timeout=10))
        except grpc.RpcError as error:
            outcome.append(error.code())

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_stop_lets_an_in_flight_allocate_finish(kubelet: FakeKubelet, make_server: ServerFactory,
                                                plugin_dir: Path) -> None:
    allocator = EchoAllocator(delay=0.5)
    server = make_server(allocator=allocator)
    kubelet.wait_for_registration(RESOURCE, 5)
    thread, outcome = allocate_in_background(kubelet, ["d0"])
    assert allocator.started.wait(5)
    server.stop(grace=5)
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], api_pb2.AllocateResponse)
    assert not (plugin_dir / SOCKET).exists()
    assert not server.registered
    kubelet.wait_for_devices(RESOURCE, lambda d: not any(x.healthy for x in d), 5)


def test_stop_gives_up_on_allocates_after_the_grace(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    allocator = EchoAllocator(delay=8.0)
    server = make_server(allocator=allocator)
    kubelet.wait_for_registration(RESOURCE, 5)
    thread, outcome = allocate_in_background(kubelet, ["d0"])
    assert allocator.started.wait(5)
    started = time.monotonic()
    server.stop(grace=0.3)
    assert time.monotonic() - started < 5  # the 0.3 s grace, not the 8 s Allocate still running
    thread.join(5)
    assert outcome and outcome[0] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def test_sigterm_stops_the_process_cleanly(kubelet: FakeKubelet, plugin_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "tests.plugin.serve_plugin", str(plugin_dir), "0.5"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kubelet.wait_for_registration(RESOURCE, 20)
        kubelet.wait_for_devices(RESOURCE, timeout=5)
        thread, outcome = allocate_in_background(kubelet, ["d1"])
        time.sleep(0.2)  # the allocator is now sleeping inside Allocate
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    thread.join(5)
    assert process.returncode == 0, stderr
    assert isinstance(outcome[0], api_pb2.AllocateResponse), outcome
    assert not (plugin_dir / SOCKET).exists()
    assert "received SIGTERM" in stderr and "stopped" in stderr
    kubelet.wait_for_devices(RESOURCE, lambda d: not any(x.healthy for x in d), 5)
    assert not kubelet.stream_open(RESOURCE)
