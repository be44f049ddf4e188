"""Agent benchmarks on 8x A100-SXM4-80GB: Allocate latency, NVML calls per Allocate, scrapes during Allocates,
RSS, restart-to-ready. Prints plain-text tables and asserts nothing (the targets are in the `target` column).

    .venv/bin/python benchmarks/agent.py            # full run: 1000 Allocates per policy, 8-10 minutes on 2 cores
    .venv/bin/python benchmarks/agent.py --quick    # 150 Allocates, one policy, about 1 minute

The agent runs as its own process exactly as the reliability tests run it (`hami-mig device-plugin
--backend sim --sim-state FILE`, tests/reliability/harness.py's ProcessNode), between a fake API
server (real HTTP) and a fake kubelet (real gRPC) in this process. The workload is seeded: pods ask
for gpumem (4000..70000 MiB), gpumem-percentage (10/25/50) or two instances; running pods end at
random; an ended pod stays on the node until 50 newer ones ended.

(a) Zero simulated NVML latency: the kubelet's Allocate call, timed here (the simulator's state file
    I/O included); while it runs, another thread scrapes /metrics every 25 ms and times each scrape.
(b) NVML calls per Allocate, counted by the simulator in the agent's process and read from here
    (`read_call_stats`: <state>.calls/). "reuse" = admitted without a mutating call, "reshape" = with.
    The agent's periodic full resync (every 30 s) lands inside some Allocate's window: the max shows it.
(c) Latency mode: the same with $HAMI_MIG_SIM_LATENCY=query=1ms,create=50ms,destroy=50ms, i.e. each
    NVML query sleeps 1 ms and each GPU/compute instance create or destroy 50 ms, like a driver. "Not
    in create/destroy" = the Allocate's time minus the time its create/destroy calls took (measured
    by the simulator).
(d) RSS of the agent process: when ready, along the way, right after the last Allocate and after
    2 s of rest (the heap is handed back after each burst).
(e) Restart-to-ready: SIGKILL the agent, start it again, time until the fake kubelet has its new
    registration and every advertised device is healthy (pods running).
(f) Import weight: RSS of fresh interpreters that import what the agent imports, then what it avoids.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podmix import next_pod, rss_mib  # noqa: E402
from timing import ms, percentile  # noqa: E402

from hami_mig.mig.planner import GeometryMode, Policy  # noqa: E402
from hami_mig.testing.apiserver import pod_manifest  # noqa: E402
from hami_mig.testing.nvmlsim import LATENCY_ENV, CallStats, read_call_stats  # noqa: E402
from tests.reliability.harness import RESOURCE, ProcessNode  # noqa: E402

GPUS = "A100-SXM4-80GB:8"
POLICIES: tuple[tuple[Policy, GeometryMode], ...] = (("hami", "config"), ("best-fit", "any"))
LATENCY = "query=1ms,create=50ms,destroy=50ms"
KEEP_COMPLETED = 50  # ended pods left on the node
SCRAPE_EVERY_S = 0.025


# --------------------------------------------------------------------------- helpers


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])


def p50_p99(values: Sequence[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def counts(values: Sequence[int]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.0f} / {percentile(values, 99):.0f} / {max(values)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SCRAPER = """
import http.client, json, sys, time
port, every = int(sys.argv[1]), float(sys.argv[2])
conn, out, failed = http.client.HTTPConnection("127.0.0.1", port, timeout=5), [], 0
sys.stdout.write("ready\\n"); sys.stdout.flush()
while not sys.stdin.readline().startswith("stop"):
    started = time.perf_counter()
    try:
        conn.request("GET", "/metrics"); response = conn.getresponse(); response.read()
        out.append(time.perf_counter() - started) if response.status == 200 else None
        failed += response.status != 200
    except OSError:
        conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5); failed += 1
print(json.dumps({"latency": out, "failed": failed}))
"""


class Scraper:
    """GET /metrics from a process of its own (so this process' threads do not delay it), timing each scrape;
    `tick` asks for one scrape, a thread here ticks every SCRAPE_EVERY_S."""

    def __init__(self, port: int) -> None:
        self.latency: list[float] = []
        self.failed = 0
        self._proc = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(SCRAPE_EVERY_S)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdout.readline()
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _tick(self) -> None:
        assert self._proc.stdin is not None
        while not self._stop_event.wait(SCRAPE_EVERY_S):
            self._proc.stdin.write("go\n")
            self._proc.stdin.flush()

    def stop(self) -> None:
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        if self._thread.is_alive():
            self._thread.join(10)
        out, _ = self._proc.communicate("stop\n", timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        self.latency, self.failed = result["latency"], result["failed"]


@contextmanager
def env(name: str, value: str | None) -> Iterator[None]:
    """The agent subprocess inherits this process' environment (ProcessNode copies os.environ)."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# --------------------------------------------------------------------------- one run


@dataclass
class Call:
    """One Allocate as the kubelet saw it, and what it asked NVML."""

    wall: float
    ok: bool
    nvml: CallStats

    @property
    def reshaped(self) -> bool:
        return self.nvml.total("mutating") > 0

    @property
    def outside_create_destroy(self) -> float:
        return self.wall - self.nvml.seconds("create") - self.nvml.seconds("destroy")


@dataclass
class Run:
    calls: list[Call] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)
    scrape_failures: int = 0
    rss_ready: float = math.nan
    rss_after: float = math.nan
    rss_settled: float = math.nan
    rss_peak: float = math.nan
    rss_series: list[tuple[int, float]] = field(default_factory=list)
    to_ready: list[float] = field(default_factory=list)

    def ok(self) -> list[Call]:
        return [c for c in self.calls if c.ok]

    def reuse(self) -> list[Call]:
        return [c for c in self.calls if c.ok and not c.reshaped]

    def reshape(self) -> list[Call]:
        return [c for c in self.calls if c.ok and c.reshaped]


def admit(node: ProcessNode, name: str, count: int) -> bool:
    """The kubelet's side: Allocate over gRPC with `count` healthy device IDs."""
    ids = [d.id for d in node.kubelet.devices(RESOURCE) if d.healthy][:count]
    try:
        node.kubelet.allocate(RESOURCE, ids, timeout=30)
    except Exception:  # grpc.RpcError: the agent refused
        return False
    return True


def run_agent(policy: Policy, geometries: GeometryMode, admissions: int, seed: int, *, latency: str | None,
              scrape: bool, restarts: int) -> Run:
    out = Run()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hb-", dir="/tmp") as tmp, env(LATENCY_ENV, latency):
        workdir = Path(tmp)
        node = ProcessNode(workdir, sim_gpus=GPUS, node="bench", extra_args=(
            "--policy", policy, "--geometries", geometries, "--state-dir", str(workdir / "state"),
            "--metrics-port", str(port), "--metrics-host", "127.0.0.1"))
        scraper = Scraper(port) if scrape else None
        try:
            node.start_agent(timeout=120)
            assert node.proc is not None
            time.sleep(0.5)
            out.rss_ready = rss_mib(node.proc.pid)[0]
            if scraper is not None:
                scraper.start()
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
                before = read_call_stats(node.state)
                started = time.perf_counter()
                ok = admit(node, name, int(limits.get(RESOURCE, "1")))
                wall = time.perf_counter() - started
                out.calls.append(Call(wall, ok, read_call_stats(node.state) - before))
                node.api.set_pod_phase("default", name, "Running" if ok else "Failed")
                (running if ok else completed).append(name)
                while len(completed) > KEEP_COMPLETED:
                    node.api.delete_pod("default", completed.popleft(), grace_period_s=0)
                if (n + 1) % max(1, admissions // 10) == 0:
                    out.rss_series.append((n + 1, rss_mib(node.proc.pid)[0]))
            if scraper is not None:
                scraper.stop()
                out.scrapes, out.scrape_failures = scraper.latency, scraper.failed
            out.rss_after = rss_mib(node.proc.pid)[0]
            time.sleep(2.0)
            out.rss_settled, out.rss_peak = rss_mib(node.proc.pid)
            for _ in range(restarts):
                previous = node.kubelet.registration(RESOURCE)
                expected = len(node.kubelet.devices(RESOURCE))
                killed = time.monotonic()
                node.kill_agent()
                starter = threading.Thread(target=node.start_agent, kwargs={"timeout": 120})
                starter.start()
                node.kubelet.wait_for_registration(RESOURCE, 120, after=previous)
                node.kubelet.wait_for_devices(
                    RESOURCE, lambda ds, n=expected: len(ds) == n and all(d.healthy for d in ds), 120)  # type: ignore[misc]
                out.to_ready.append(time.monotonic() - killed)
                starter.join()
        finally:
            if scraper is not None:
                scraper.stop()
            node.close()
    return out


# --------------------------------------------------------------------------- tables


class Rows:
    """Table rows: one column per run, then the target."""

    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs
        self.rows: list[list[str]] = []

    def __call__(self, label: str, fn: Callable[[Run], str], target: str = "") -> None:
        self.rows.append([label, *(fn(run) for run in self.runs.values()), target])

    def allocates(self, target: str = "") -> None:
        """The rows both tables start with: how many Allocates, and their latency."""
        self("Allocate calls (admitted: reuse + reshape / refused)",
             lambda r: f"{len(r.calls)} ({len(r.reuse())} + {len(r.reshape())} / {len(r.calls) - len(r.ok())})")
        self("Allocate p50 / p99, all", lambda r: p50_p99([c.wall for c in r.calls]), target)
        self("  reusing an instance", lambda r: p50_p99([c.wall for c in r.reuse()]))
        self("  reshaping", lambda r: p50_p99([c.wall for c in r.reshape()]))


def rows_zero_latency(runs: dict[str, Run], admissions: int) -> list[list[str]]:
    row = Rows(runs)
    row.allocates("p99 < 50 ms")
    row("  refused", lambda r: p50_p99([c.wall for c in r.calls if not c.ok]))
    row("  max", lambda r: ms(max((c.wall for c in r.calls), default=math.nan)))
    row(f"scrape p50 / p99 during the Allocates (every {SCRAPE_EVERY_S * 1000:.0f} ms)",
        lambda r: p50_p99(r.scrapes), "p99 < 10 ms")
    row("  scrapes (failed)", lambda r: f"{len(r.scrapes)} ({r.scrape_failures})")
    row("NVML calls per Allocate reusing, p50 / p99 / max", lambda r: counts([c.nvml.total() for c in r.reuse()]),
        "<= 40")
    row("NVML calls per Allocate reshaping, p50 / p99 / max",
        lambda r: counts([c.nvml.total() for c in r.reshape()]), "<= 80")
    row("  of them mutating, p50 / p99 / max",
        lambda r: counts([c.nvml.total("mutating") for c in r.reshape()]))
    row("NVML calls per refused Allocate, p50 / p99 / max",
        lambda r: counts([c.nvml.total() for c in r.calls if not c.ok]))
    row("NVML calls per Allocate, mean (all)",
        lambda r: f"{sum(c.nvml.total() for c in r.calls) / max(1, len(r.calls)):.1f}")
    row("agent RSS when ready", lambda r: f"{r.rss_ready:.1f} MiB")
    row(f"agent RSS right after {admissions} Allocates", lambda r: f"{r.rss_after:.1f} MiB", "< 80 MiB")
    row("  2 s later (peak VmHWM)", lambda r: f"{r.rss_settled:.1f} MiB ({r.rss_peak:.1f})", "< 80 MiB")
    row("  along the way (Allocates: MiB)", lambda r: " ".join(f"{n}:{m:.0f}" for n, m in r.rss_series))
    row("SIGKILL -> registered, all devices healthy, p50 / max",
        lambda r: f"{ms(percentile(r.to_ready, 50))} / {ms(max(r.to_ready, default=math.nan))}"
        if r.to_ready else "-")
    return row.rows


def rows_latency(runs: dict[str, Run]) -> list[list[str]]:
    row = Rows(runs)
    row.allocates()
    row("not in create/destroy calls, p50 / p99, all", lambda r: p50_p99([c.outside_create_destroy for c in r.calls]),
        "p99 < 60 ms")
    row("  reusing", lambda r: p50_p99([c.outside_create_destroy for c in r.reuse()]))
    row("  reshaping", lambda r: p50_p99([c.outside_create_destroy for c in r.reshape()]))
    row("  refused", lambda r: p50_p99([c.outside_create_destroy for c in r.calls if not c.ok]))
    row("time in create/destroy calls per reshape, p50 / p99",
        lambda r: p50_p99([c.nvml.seconds("create") + c.nvml.seconds("destroy") for c in r.reshape()]))
    row("NVML queries per Allocate, p50 / p99 / max", lambda r: counts([c.nvml.total("query") for c in r.calls]))
    return row.rows


# --------------------------------------------------------------------------- (f) import weight

AGENT_IMPORTS = """
import hami_mig.cli.device_plugin, hami_mig.testing.nvmlsim
from kubernetes.client import CoreV1Event, V1Node, V1PodList
from kubernetes import config
"""
IMPORT_STEPS: tuple[tuple[str, str], ...] = (
    ("the agent's imports, service-account config (in a pod)", "config.load_incluster_config"),
    ("the agent's imports, --kubeconfig (the benchmarks' agent)", "config.load_kube_config"),
    ("  and the kubeconfig loader's OIDC dependencies", "config.load_kube_config; import requests_oauthlib"),
    ("  and the generated CoreV1Api", "config.load_kube_config; from kubernetes.client import CoreV1Api"),
    ("  and kubernetes' package __init__", "config.load_kube_config; import kubernetes; kubernetes.__version__"),
)


def import_weight() -> list[list[str]]:
    rows = []
    for label, extra in IMPORT_STEPS:
        code = AGENT_IMPORTS + extra + "\nprint(open('/proc/self/status').read())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                             cwd=ROOT)
        rss = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("VmRSS:"))
        rows.append([label, f"{rss / 1024:.1f} MiB"])
    return rows


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="150 Allocates, one policy (about a minute)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--admissions", type=int, help="Allocates per policy with zero NVML latency (default 1000)")
    parser.add_argument("--latency-admissions", type=int, help="Allocates per policy in latency mode (default 300)")
    parser.add_argument("--restarts", type=int, help="SIGKILL restarts per policy (default 5)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # refusals are part of the workload; keep the tables readable
    fast_n = args.admissions or (150 if args.quick else 1000)
    slow_n = args.latency_admissions or (60 if args.quick else 300)
    restarts = args.restarts if args.restarts is not None else (2 if args.quick else 5)
    policies = POLICIES[:1] if args.quick else POLICIES
    labels = [f"{p}/{g}" for p, g in policies]
    began = time.monotonic()

    fast = {label: run_agent(p, g, fast_n, args.seed, latency=None, scrape=True, restarts=restarts)
            for label, (p, g) in zip(labels, policies, strict=True)}
    print(f"(a) (b) (d) (e): the agent as a subprocess on the file-backed simulator, {GPUS.replace(':', ' x ')}, "
          f"seed {args.seed}, zero NVML latency")
    print(table(["measurement", *labels, "target"], rows_zero_latency(fast, fast_n)))

    slow = {label: run_agent(p, g, slow_n, args.seed, latency=LATENCY, scrape=False, restarts=0)
            for label, (p, g) in zip(labels, policies, strict=True)}
    print(f"\n(c): the same with {LATENCY_ENV}={LATENCY}, {slow_n} Allocates")
    print(table(["measurement", *labels, "target"], rows_latency(slow)))
    print("\n(f): import weight, VmRSS of a fresh interpreter")
    print(table(["imported", "VmRSS"], import_weight()))
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"{time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
