"""Scrape cost of /metrics on a full node: in process and through the real HTTP endpoint.

    .venv/bin/python benchmarks/metrics.py [--gpus 8] [--instances 7] [--iterations 500]

Target: p99 < 10 ms per scrape for 8 GPUs x 7 instances. Wall time includes whatever else the
machine runs; CPU time (this thread's) is the scrape's own cost.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import statistics
import sys
import time
from collections.abc import Callable

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from hami_mig.agent.snapshot import GpuView, Holder, InstanceView, NodeSnapshot, SlotView
from hami_mig.metrics import AgentStats, MetricsServer, build_registry

OM_ACCEPT = "application/openmetrics-text; version=1.0.0"


def full_node(gpus: int, instances: int) -> NodeSnapshot:
    """Every GPU carved as `instances` x 1g.5gb (A100-40GB geometry 0), all but one in use."""
    views = []
    for g in range(gpus):
        insts = tuple(
            InstanceView("1g.5gb", s, 1, 4864, "in_use" if s else "free", f"MIG-{g}-{s}", s + 1, 0,
                         Holder("team", f"job-{g}-{s}", 0, uid=f"uid-{g}-{s}") if s else None)
            for s in range(instances))
        views.append(GpuView(
            index=g, uuid=f"GPU-{g:08d}-0000-0000-0000-000000000000", name="NVIDIA A100-SXM4-40GB",
            memory_mib=40960, mig_mode="enabled", healthy=True, managed=True, memory_slices=8, geometry_index=0,
            slots=tuple(SlotView(s, "1g.5gb", s != 0) for s in range(instances)), instances=insts,
            free_capacity={"1g.5gb": 1, "1g.10gb": 0, "2g.10gb": 0, "3g.20gb": 0, "4g.20gb": 0, "7g.40gb": 0}))
    return NodeSnapshot("gpu-node-01", tuple(views), pods_waiting=1, registered=True, nvml_ok=True, api_ok=True)


def busy_stats() -> AgentStats:
    stats = AgentStats()
    for n in range(200):
        stats.observe_allocate(0.001 * (n % 50), ("allocated", "reused", "failed", "rejected")[n % 4])
        stats.count_reshape("create", "ok")
    for code in ("NVML_ERROR_IN_USE", "NVML_ERROR_INSUFFICIENT_RESOURCES", "NVML_ERROR_TIMEOUT"):
        stats.count_nvml_error(code)
    stats.count_api_error("conflict")
    stats.count_reconcile_repair("orphan_instance")
    return stats


def measure(fn: Callable[[], object], iterations: int) -> tuple[list[float], list[float]]:
    for _ in range(min(20, iterations)):
        fn()  # warm up
    wall, cpu = [], []
    for _ in range(iterations):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return wall, cpu


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--instances", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=500)
    args = ap.parse_args(argv)

    snap = full_node(args.gpus, args.instances)
    registry = build_registry(lambda: snap, busy_stats())
    text, om = generate_latest(registry), generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    samples = sum(1 for ln in text.splitlines() if ln and not ln.startswith(b"#"))

    rows: list[tuple[str, list[float], list[float] | None]] = []
    rows.append(("in-process, text 0.0.4", *measure(lambda: generate_latest(registry), args.iterations)))
    rows.append(("in-process, OpenMetrics",
                 *measure(lambda: generate_openmetrics(registry), args.iterations)))  # type: ignore[no-untyped-call]
    with MetricsServer(registry, port=0, host="127.0.0.1") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

        def scrape(headers: dict[str, str]) -> Callable[[], object]:
            def once() -> bytes:
                conn.request("GET", "/metrics", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200, resp.status
                return body
            return once

        for label, headers in (("HTTP GET, text 0.0.4", {}), ("HTTP GET, OpenMetrics", {"Accept": OM_ACCEPT}),
                               ("HTTP GET, OpenMetrics+gzip", {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"})):
            wall, _ = measure(scrape(headers), args.iterations)
            rows.append((label, wall, None))  # the server thread's CPU is not this thread's
        conn.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"hami-mig /metrics scrape: {args.gpus} GPUs x {args.instances} instances, {samples} samples, "
          f"{args.iterations} scrapes each; {os.cpu_count()} CPUs, load {load:.1f}, Python {sys.version.split()[0]}")
    print(f"exposition: text {len(text)} B, OpenMetrics {len(om)} B, OpenMetrics gzip "
          f"{len(gzip.compress(om, compresslevel=1))} B")
    print()
    print(f"| {'path':<28} | wall p50 ms | wall p99 ms | wall max ms | cpu p50 ms | cpu p99 ms |")
    print(f"|{'-' * 30}|-------------|-------------|-------------|------------|------------|")
    for label, wall, cpu in rows:
        c50 = f"{pct(cpu, 50):10.2f}" if cpu else f"{'-':>10}"
        c99 = f"{pct(cpu, 99):10.2f}" if cpu else f"{'-':>10}"
        print(f"| {label:<28} | {pct(wall, 50):11.2f} | {pct(wall, 99):11.2f} | {max(wall) * 1e3:11.2f} "
              f"| {c50} | {c99} |")
    print()
    print(f"mean in-process text scrape: {statistics.mean(rows[0][1]) * 1e3:.2f} ms (target p99 < 10 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
