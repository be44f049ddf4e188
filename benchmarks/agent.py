"""Agent benchmarks on 8x A100-SXM4-80GB: Allocate latency, NVML ops per admission, RSS, restart-to-ready.

Prints plain-text tables and asserts nothing (issue 6's targets are in the `target` column).

    .venv/bin/python benchmarks/agent.py            # full run, 3-4 minutes on 2 shared cores
    .venv/bin/python benchmarks/agent.py --quick    # smaller samples, under 60 s

(a) Allocate latency, end to end: the real agent in-process (SimCluster: fake API server over real
    HTTP, fake kubelet calling Allocate over real gRPC, NVML simulator), a seeded mixed workload
    (gpumem in MiB, gpumem-percentage, some 2-instance pods; pods end at random, a completed pod
    stays on the node until 50 newer ones completed). Timed: the kubelet's gRPC Allocate call, started once
    the agent has finished refreshing its snapshot after the previous one (as when pods arrive spaced).
    "NVML excluded" subtracts the time spent inside simulated NVML calls (a timing proxy between
    the agent's NvmlBackend and the simulator), so it is the agent's own time plus the API round
    trips. Then the same workload (a prefix of it) with a realistic NVML latency: 0.3 s per GPU
    instance create and per GPU instance destroy (`NvmlSim.set_latency`), CI calls instant.
    Both for the two policies: hami/config (HAMi's knownMigGeometries) and best-fit/any.
(b) NVML mutating calls (create/destroy GI and CI) per admission, counted by the simulator, and
    how many admissions reused a free instance (the decision had no operations).
(c) RSS of the agent as a subprocess (`hami-mig device-plugin --backend sim --sim-state ...`,
    tests/reliability/harness.py's ProcessNode) after it is ready and after N admissions.
(d) restart-to-ready: SIGKILL the agent subprocess, start it again, time until the fake kubelet
    has its new registration and every advertised device is healthy (5 restarts, pods running).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podmix import next_pod, rss_mib  # noqa: E402
from timing import ms, percentile  # noqa: E402

from hami_mig.agent.config import AgentConfig  # noqa: E402
from hami_mig.cli.device_plugin import settle_heap  # noqa: E402
from hami_mig.mig.planner import GeometryMode, Policy  # noqa: E402
from hami_mig.nvml import NvmlBackend  # noqa: E402
from hami_mig.testing.apiserver import pod_manifest  # noqa: E402
from hami_mig.testing.cluster import SimCluster  # noqa: E402
from hami_mig.testing.nvmlsim import KINDS, NvmlSim  # noqa: E402
from tests.reliability.harness import RESOURCE, ProcessNode  # noqa: E402

GPUS = "A100-SXM4-80GB:8"
POLICIES: tuple[tuple[Policy, GeometryMode], ...] = (("hami", "config"), ("best-fit", "any"))
KEEP_COMPLETED = 50  # completed pods left on the node (the agent lists them on every Allocate)
GI_LATENCY_S = 0.3
GI_CALLS = sorted(KINDS["create_gi"] | KINDS["destroy_gi"])
WARMUP = 10  # admissions before timing starts (first planner calls fill the layout caches)


# --------------------------------------------------------------------------- helpers


def p50_p99(values: Sequence[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])


class GcClock:
    """Adds up the time the interpreter spends in garbage collections (any thread), by generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def reset(self) -> None:
        self.seconds, self.full = 0.0, 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2


class TimedNvml:
    """Stands between NvmlBackend and the simulator: adds up the time spent inside nvml* calls
    (less garbage collections that ran during them, which `GcClock` counts, so the two never overlap)."""

    def __init__(self, sim: NvmlSim, gc_clock: GcClock) -> None:
        self._sim = sim
        self._gc = gc_clock
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.count = 0

    def reset(self) -> None:
        with self._lock:
            self.seconds, self.count = 0.0, 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._sim, name)
        if not name.startswith("nvml") or not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, gc_before = time.perf_counter(), self._gc.seconds
            try:
                return target(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started - (self._gc.seconds - gc_before)
                with self._lock:
                    self.seconds += spent
                    self.count += 1

        return timed


# --------------------------------------------------------------------------- (a) + (b) in-process


@dataclass
class Sample:
    wall: float
    nvml: float
    gc: float
    full_gcs: int
    nvml_calls: int
    ok: bool
    mutating: int = 0
    operations: int = 0
    reused: bool = False


@dataclass
class RunResult:
    samples: list[Sample] = field(default_factory=list)
    refused_reasons: Counter[str] = field(default_factory=Counter)


def run_inprocess(policy: Policy, geometries: GeometryMode, admissions: int, seed: int,
                  nvml_latency: float) -> RunResult:
    config = AgentConfig(node_name="bench", reconcile_interval_s=3600, events=False, policy=policy,
                         geometries=geometries)
    cluster = SimCluster(config, sim_gpus=GPUS, seed=seed)
    gc_clock = GcClock()
    timer = TimedNvml(cluster.sim, gc_clock)
    cluster.backend = NvmlBackend(timer)  # before start(): the agent gets the timing proxy
    result = RunResult()
    with cluster, gc_clock:
        settle_heap()  # as `hami-mig device-plugin` does once the agent has started
        if nvml_latency:
            cluster.sim.set_latency(nvml_latency, GI_CALLS)
        kubelet_allocate = cluster.kubelet.allocate
        last_wall: list[float] = [0.0]

        def timed_allocate(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return kubelet_allocate(*args, **kwargs)
            finally:
                last_wall[0] = time.perf_counter() - started

        cluster.kubelet.allocate = timed_allocate  # type: ignore[method-assign]
        rng = random.Random(seed)
        running: list[str] = []
        completed: deque[str] = deque()

        def complete(name: str) -> None:
            completed.append(name)
            while len(completed) > KEEP_COMPLETED:
                cluster.api.delete_pod("default", completed.popleft(), grace_period_s=0)

        for n in range(admissions + WARMUP):
            while running and rng.random() < 0.45:
                name = running.pop(rng.randrange(len(running)))
                cluster.finish(name)
                complete(name)
            name = f"p{n}"
            cluster.submit(name, next_pod(rng))
            assert cluster.agent is not None
            last = cluster.agent.history[-1] if cluster.agent.history else None
            cluster.agent.snapshot(wait_s=30.0)  # the previous call's background refresh is done
            cluster.sim.reset_counts()
            timer.reset()
            gc_clock.reset()
            last_wall[0] = math.nan
            admission = cluster.admit(name)
            outcome = cluster.agent.history[-1] if cluster.agent.history else None
            if admission.ok:
                running.append(name)
            else:
                complete(name)
            if n < WARMUP or math.isnan(last_wall[0]):  # warm-up, or the kubelet itself refused (no call)
                continue
            sample = Sample(last_wall[0], timer.seconds, gc_clock.seconds, gc_clock.full, timer.count, admission.ok,
                            mutating=cluster.sim.mutating_calls())
            if admission.ok and outcome is not None and outcome is not last:
                sample.operations = len(outcome.decision.operations)
                sample.reused = not outcome.reshaped
            elif not admission.ok:
                result.refused_reasons[re.sub(r"^pod \S+: ", "", admission.error)[:70]] += 1
            result.samples.append(sample)
    gc.unfreeze()
    return result


def inprocess_rows(results: dict[str, RunResult], slow: dict[str, RunResult]) -> list[list[str]]:
    names = list(results)
    rows: list[list[str]] = []

    def row(label: str, fn: Callable[[RunResult], str], target: str = "", source: dict[str, RunResult] | None = None,
            ) -> None:
        src = source if source is not None else results
        rows.append([label, *(fn(src[n]) for n in names), target])

    def ok(r: RunResult) -> list[Sample]:
        return [s for s in r.samples if s.ok]

    row("Allocate calls timed (admitted / refused)",
        lambda r: f"{len(r.samples)} ({len(ok(r))} / {len(r.samples) - len(ok(r))})")
    rows.append(["-- zero simulated NVML latency --", *([""] * len(names)), ""])
    row("gRPC Allocate p50 / p99, NVML excluded", lambda r: p50_p99([s.wall - s.nvml for s in r.samples]),
        "p99 < 50 ms")
    row("  admitted only", lambda r: p50_p99([s.wall - s.nvml for s in ok(r)]))
    row("  refused only", lambda r: p50_p99([s.wall - s.nvml for s in r.samples if not s.ok]))
    row("gRPC Allocate p50 / p99, wall (sim included)", lambda r: p50_p99([s.wall for s in r.samples]))
    row("  time inside simulated NVML p50 / p99", lambda r: p50_p99([s.nvml for s in r.samples]))
    row("  time in garbage collection p50 / p99", lambda r: p50_p99([s.gc for s in r.samples]))
    row("  calls with a full (gen 2) collection", lambda r: str(sum(1 for s in r.samples if s.full_gcs)))
    row("gRPC Allocate p50 / p99, NVML and GC excluded",
        lambda r: p50_p99([s.wall - s.nvml - s.gc for s in r.samples]))
    row("  NVML calls per Allocate p50 / max",
        lambda r: f"{percentile([s.nvml_calls for s in r.samples], 50):.0f} / "
                  f"{max(s.nvml_calls for s in r.samples)}")
    row("NVML mutating calls per admitted pod, mean", lambda r: f"{statistics.mean(s.mutating for s in ok(r)):.2f}",
        "<= 2")
    row("  per Allocate call (refused included), mean",
        lambda r: f"{statistics.mean(s.mutating for s in r.samples):.2f}")
    row("  planned operations per admitted pod, mean",
        lambda r: f"{statistics.mean(s.operations for s in ok(r)):.2f}")
    row("  max in one admission", lambda r: str(max(s.mutating for s in r.samples)))
    row("admissions that reused a free instance", lambda r: f"{sum(s.reused for s in ok(r))} of {len(ok(r))}")
    row("  of them with a mutating NVML call", lambda r: str(sum(1 for s in ok(r) if s.reused and s.mutating)),
        "0")
    first = slow[names[0]]
    rows.append([f"-- {GI_LATENCY_S} s per GI create / destroy ({len(first.samples)} calls) --",
                 *([""] * len(names)), ""])
    row("gRPC Allocate p50 / p99, wall, all", lambda r: p50_p99([s.wall for s in r.samples]), source=slow)
    row("  reusing (no NVML change)", lambda r: p50_p99([s.wall for s in ok(r) if s.reused]), source=slow)
    row("  reshaping", lambda r: p50_p99([s.wall for s in ok(r) if not s.reused]), source=slow)
    row("  NVML excluded, all", lambda r: p50_p99([s.wall - s.nvml for s in r.samples]), source=slow)
    row("  mean wall per admitted pod", lambda r: ms(statistics.mean(s.wall for s in ok(r))), source=slow)
    return rows


# --------------------------------------------------------------------------- (c) + (d) subprocess


def admit(node: ProcessNode, name: str, count: int) -> bool:
    """The kubelet's side: Allocate over gRPC with `count` healthy device IDs."""
    ids = [d.id for d in node.kubelet.devices(RESOURCE) if d.healthy][:count]
    try:
        node.kubelet.allocate(RESOURCE, ids, timeout=30)
    except Exception:  # grpc.RpcError: the agent refused
        node.api.set_pod_phase("default", name, "Failed")
        return False
    node.api.set_pod_phase("default", name, "Running")
    return True


@dataclass
class ProcessResult:
    rss_ready: tuple[float, float] = (0.0, 0.0)
    rss_after: tuple[float, float] = (0.0, 0.0)
    rss_restarted: tuple[float, float] = (0.0, 0.0)
    rss_series: list[tuple[int, float]] = field(default_factory=list)  # (admissions so far, VmRSS MiB)
    admitted: int = 0
    refused: int = 0
    latency: list[float] = field(default_factory=list)
    to_registered: list[float] = field(default_factory=list)
    to_ready: list[float] = field(default_factory=list)


def run_process(policy: Policy, geometries: GeometryMode, admissions: int, restarts: int, seed: int) -> ProcessResult:
    out = ProcessResult()
    with tempfile.TemporaryDirectory(prefix="hb-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        node = ProcessNode(workdir, sim_gpus=GPUS, node="bench", extra_args=(
            "--policy", policy, "--geometries", geometries, "--state-dir", str(workdir / "state")))
        try:
            node.start_agent(timeout=60)
            assert node.proc is not None
            time.sleep(0.5)
            out.rss_ready = rss_mib(node.proc.pid)
            rng = random.Random(seed)
            running: list[str] = []
            completed: deque[str] = deque()
            for n in range(admissions):
                while running and rng.random() < 0.45:
                    done = running.pop(rng.randrange(len(running)))
                    node.finish(done)
                    completed.append(done)
                limits = next_pod(rng)
                name = f"p{n}"
                node.api.add_pod(pod_manifest(name, node=node.node, limits=limits))
                started = time.perf_counter()
                ok = admit(node, name, int(limits.get(RESOURCE, "1")))
                out.latency.append(time.perf_counter() - started)
                if ok:
                    out.admitted += 1
                    running.append(name)
                else:
                    out.refused += 1
                    completed.append(name)
                while len(completed) > KEEP_COMPLETED:
                    node.api.delete_pod("default", completed.popleft(), grace_period_s=0)
                if (n + 1) % max(1, admissions // 10) == 0:
                    out.rss_series.append((n + 1, rss_mib(node.proc.pid)[0]))
            out.rss_after = rss_mib(node.proc.pid)
            for _ in range(restarts):
                previous = node.kubelet.registration(RESOURCE)
                expected = len(node.kubelet.devices(RESOURCE))
                killed = time.monotonic()
                node.kill_agent()
                starter = threading.Thread(target=node.start_agent, kwargs={"timeout": 60})
                starter.start()
                registration = node.kubelet.wait_for_registration(RESOURCE, 60, after=previous)
                node.kubelet.wait_for_devices(
                    RESOURCE, lambda ds, n=expected: len(ds) == n and all(d.healthy for d in ds), 60)  # type: ignore[misc]
                ready = time.monotonic()
                starter.join()
                out.to_registered.append(registration.at - killed)
                out.to_ready.append(ready - killed)
            if restarts:
                time.sleep(0.5)
                assert node.proc is not None
                out.rss_restarted = rss_mib(node.proc.pid)
        finally:
            node.close()
    return out


def process_rows(results: dict[str, ProcessResult], admissions: int, restarts: int) -> list[list[str]]:
    names = list(results)

    def row(label: str, fn: Callable[[ProcessResult], str], target: str = "") -> list[str]:
        return [label, *(fn(results[n]) for n in names), target]

    def rss(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.1f} MiB (peak {pair[1]:.1f})"

    return [
        row("agent RSS when ready (VmRSS, VmHWM)", lambda r: rss(r.rss_ready)),
        row(f"agent RSS after {admissions} admissions", lambda r: rss(r.rss_after), "< 80 MiB"),
        row("  RSS along the way (admissions: MiB)",
            lambda r: " ".join(f"{n}:{mib:.0f}" for n, mib in r.rss_series)),
        row("  admitted / refused", lambda r: f"{r.admitted} / {r.refused}"),
        row("  gRPC Allocate p50 / p99 (subprocess, sim file I/O incl.)", lambda r: p50_p99(r.latency)),
        row(f"agent RSS after {restarts} restarts (fresh process, pods running)", lambda r: rss(r.rss_restarted)),
        row(f"SIGKILL -> registered with the kubelet, p50 / max of {restarts}",
            lambda r: f"{ms(percentile(r.to_registered, 50))} / {ms(max(r.to_registered, default=math.nan))}"),
        row("SIGKILL -> registered, all devices healthy, p50 / max",
            lambda r: f"{ms(percentile(r.to_ready, 50))} / {ms(max(r.to_ready, default=math.nan))}"),
    ]


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller samples (under 60 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--admissions", type=int, help="timed Allocates per policy, zero NVML latency")
    parser.add_argument("--slow-admissions", type=int, help="timed Allocates per policy, with NVML latency")
    parser.add_argument("--process-admissions", type=int, help="admissions before the subprocess RSS reading")
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # refusals are part of the workload; keep the table readable
    fast_n = args.admissions or (80 if args.quick else 400)
    slow_n = args.slow_admissions or (20 if args.quick else 100)
    proc_n = args.process_admissions or (60 if args.quick else 300)
    began = time.monotonic()

    labels = [f"{p}/{g}" for p, g in POLICIES]
    fast = {label: run_inprocess(p, g, fast_n, args.seed, 0.0) for label, (p, g) in zip(labels, POLICIES, strict=True)}
    slow = {label: run_inprocess(p, g, slow_n, args.seed, GI_LATENCY_S)
            for label, (p, g) in zip(labels, POLICIES, strict=True)}
    print(f"(a) + (b): the agent in-process, {GPUS.replace(':', ' x ')}, seed {args.seed}, "
          f"{WARMUP} warm-up admissions not timed")
    print(table(["measurement", *labels, "target"], inprocess_rows(fast, slow)))
    for label in labels:
        reasons = ", ".join(f"{k} x{v}" for k, v in fast[label].refused_reasons.most_common(3))
        print(f"  refusals {label}: {reasons or 'none'}")

    # --quick: the CLI's default policy only (RSS and restart time hardly depend on the policy)
    proc_policies = POLICIES[:1] if args.quick else POLICIES
    procs = {f"{p}/{g}": run_process(p, g, proc_n, args.restarts, args.seed) for p, g in proc_policies}
    print(f"\n(c) + (d): the agent as a subprocess (hami-mig device-plugin --backend sim), {GPUS.replace(':', ' x ')}")
    print(table(["measurement", *procs, "target"], process_rows(procs, proc_n, args.restarts)))
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
