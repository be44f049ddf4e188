"""Device plugin benchmarks: re-registration after kubelet restarts, Allocate latency, RSS, streams under load.

Run: python benchmarks/plugin.py [--restarts 20] [--allocates 2000]
The plugin runs in its own process, as in production. Prints a table and asserts nothing
(targets: re-registration < 1 s, Allocate p99 < 5 ms, RSS < 60 MiB).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from timing import ms, percentile  # noqa: E402

from hami_mig.plugin import (  # noqa: E402
    ContainerAllocation,
    Device,
    DevicePluginServer,
    MutableDeviceSource,
    install_signal_handlers,
)
from hami_mig.plugin.protocol import unix_address  # noqa: E402
from hami_mig.plugin.rpc import DevicePluginClient  # noqa: E402
from hami_mig.testing.fake_kubelet import FakeKubelet  # noqa: E402

RESOURCE = "example.com/gpu"
SOCKET = "bench.sock"
Row = tuple[str, str, str, str]


class TrivialAllocator:
    """Does no work, so the numbers are the plugin's own overhead."""

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        return ContainerAllocation(envs={"VISIBLE_DEVICES": ",".join(device_ids)})


def devices(count: int) -> list[Device]:
    return [Device(f"dev-{i}", numa_node=i % 2, group=f"gpu{i // 7}") for i in range(count)]


class ServerProcess:
    """The plugin in its own process, as in production: the kubelet (here the parent) is another process."""

    def __init__(self, directory: Path, device_count: int, flip_ms: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(directory), str(device_count), str(flip_ms)],
            stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("benchmark plugin process did not start")

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


def serve(directory: str, device_count: int, flip_ms: int) -> None:
    """Child process: serve until SIGTERM, optionally flipping one device's health every ``flip_ms``."""
    source = MutableDeviceSource(devices(device_count))
    server = DevicePluginServer(RESOURCE, SOCKET, source, TrivialAllocator(), directory)
    shutdown = install_signal_handlers()
    server.start()
    server.wait_registered(20)
    print("ready", flush=True)
    healthy = True
    while not shutdown.wait(flip_ms / 1000 if flip_ms else 1.0):
        if flip_ms:
            healthy = not healthy
            source.set_health(f"dev-{device_count - 1}", healthy)
    server.stop(1)


def bench_restarts(directory: Path, restarts: int) -> list[Row]:
    with FakeKubelet(directory) as kubelet:
        server = ServerProcess(directory, 16)
        last = kubelet.wait_for_registration(RESOURCE, 10)
        from_up, from_restart = [], []
        for _ in range(restarts):
            time.sleep(random.uniform(0.0, 0.2))  # restarts come at any phase of the plugin's watch loop
            begin = time.monotonic()
            kubelet.restart()
            up = time.monotonic()
            last = kubelet.wait_for_registration(RESOURCE, 10, after=last)
            kubelet.wait_for_devices(RESOURCE, timeout=10)
            from_up.append(last.at - up)
            from_restart.append(last.at - begin)
        server.stop()
    return [
        (f"re-registration after the new kubelet.sock appears ({restarts} restarts)",
         ms(statistics.median(from_up), 2), ms(percentile(from_up, 99), 2), "< 1 s"),
        ("  same, counted from the start of the kubelet restart", ms(statistics.median(from_restart), 2),
         ms(percentile(from_restart, 99), 2), ""),
    ]


def bench_allocate(directory: Path, count: int, device_count: int) -> list[Row]:
    with FakeKubelet(directory) as kubelet:
        server = ServerProcess(directory, device_count)
        kubelet.wait_for_devices(RESOURCE, lambda d: len(d) == device_count, 10)
        for i in range(50):  # warm up
            kubelet.allocate(RESOURCE, [f"dev-{i % device_count}"])
        samples = []
        for i in range(count):
            started = time.perf_counter()
            kubelet.allocate(RESOURCE, [f"dev-{i % device_count}"])
            samples.append(time.perf_counter() - started)
        rss = server.rss_mib()
        server.stop()
    return [(f"Allocate round trip ({count} calls, trivial allocator)", ms(statistics.median(samples), 2),
             ms(percentile(samples, 99), 2), "p99 < 5 ms"),
            (f"plugin process RSS (VmRSS), {device_count} devices, after {count} Allocates", f"{rss:.1f} MiB", "",
             "< 60 MiB")]


def bench_streams(directory: Path, streams: int, count: int) -> list[Row]:
    with FakeKubelet(directory) as kubelet:
        server = ServerProcess(directory, 16, flip_ms=50)
        kubelet.wait_for_devices(RESOURCE, timeout=10)
        channels = [grpc.insecure_channel(unix_address(directory / SOCKET)) for _ in range(5)]
        calls = [DevicePluginClient(channels[i % 5]).list_and_watch() for i in range(streams)]
        received = [0] * streams

        def consume(index: int) -> None:
            with contextlib.suppress(grpc.RpcError):
                for _ in calls[index]:
                    received[index] += 1

        readers = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(streams)]
        for reader in readers:
            reader.start()
        samples, errors = [], 0
        started_all = time.monotonic()
        for i in range(count):
            started = time.perf_counter()
            try:
                kubelet.allocate(RESOURCE, [f"dev-{i % 15}"], timeout=5)
            except grpc.RpcError:
                errors += 1
            samples.append(time.perf_counter() - started)
        elapsed = time.monotonic() - started_all
        time.sleep(0.2)
        kubelet_updates = kubelet.update_count(RESOURCE)
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
        server.stop()
    return [
        (f"Allocate while {streams} extra ListAndWatch streams are open ({count} calls, {errors} errors)",
         ms(statistics.median(samples), 2), ms(percentile(samples, 99), 2), "no errors"),
        (f"  stream updates received in {elapsed:.1f} s (health flip every 50 ms): min/max per stream",
         str(min(received)), str(max(received)), f"kubelet got {kubelet_updates}"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--allocates", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--serve", nargs=3, metavar=("DIR", "DEVICES", "FLIP_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0

    benches: list[Callable[[Path], list[Row]]] = [
        lambda d: bench_restarts(d, args.restarts),
        lambda d: bench_allocate(d, args.allocates, args.devices),
        lambda d: bench_streams(d, args.streams, 1000),
    ]
    rows: list[Row] = []
    for bench in benches:
        directory = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
        try:
            rows.extend(bench(directory))
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    header = ("measurement", "p50 / value", "p99", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    sys.stdout.write(line.format(*header) + "\n" + line.format(*("-" * w for w in widths)) + "\n")
    for row in rows:
        sys.stdout.write(line.format(*row) + "\n")
    sys.stdout.write(f"(python {sys.version.split()[0]}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
