"""Long soak: the agent subprocess on 8 simulated GPUs, pods arriving and ending, agent SIGKILLs, kubelet restarts.

Prints a table and asserts nothing. Bounded in rounds and in time, loopback only, stops by itself.

    .venv/bin/python benchmarks/soak.py            # 800 rounds or 270 s, whichever comes first
    .venv/bin/python benchmarks/soak.py --quick    # 150 rounds or 50 s

The agent is `hami-mig device-plugin --backend sim --sim-state FILE --state-dir DIR` in its own
process (tests/reliability/harness.py's ProcessNode), between a fake API server (real HTTP) and a
fake kubelet (real gRPC) in this process, reconciling every 5 s. Each round: running pods end at
random (a completed pod stays on the node until 50 newer ones completed, then it is deleted), one
new pod arrives (gpumem, gpumem-percentage or two instances) and the kubelet calls Allocate. Now and
then (seeded) the agent is SIGKILLed, of four kinds: between two admissions; at a random moment of an
Allocate (0-80 ms after the call starts); just before its k-th mutating NVML call (each restart arms
this with probability 1/2, k in 1..6: it fires in an Allocate, a reconcile or the next start); and
the kubelet restarts (the agent must register again). After each crash the agent is started again
and the node is checked:

* instances lost: a live pod's MIG UUID missing from the GPUs, or found at another placement, or
  missing from the pod's record (checked every round, not only after crashes); must be 0.
* leaks (as in tests/reliability/test_faults.py): after a recovery, an instance no live pod holds at a
  placement that was not free capacity (an instance no live pod held) just before the crash, and that no
  pod's record names; must be 0. A crash after the record was written but before the kubelet got the
  answer fails that pod (the kubelet saw an error) while its record names the new instance: the agent
  then treats it as any ended pod's instance, free for reuse; those are counted apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from podmix import next_pod, rss_mib  # noqa: E402
from timing import ms, percentile  # noqa: E402

from hami_mig.agent.records import INSTANCES_ANNOTATION  # noqa: E402
from hami_mig.testing.apiserver import pod_manifest  # noqa: E402
from tests.reliability.harness import RESOURCE, ProcessNode  # noqa: E402

GPUS = "A100-SXM4-80GB:8"
KEEP_COMPLETED = 50
Placement = tuple[int, str, int]  # GPU index, profile, start slice


@dataclass
class Soak:
    node: ProcessNode
    rng: random.Random
    arm_probability: float = 0.5
    live: dict[str, dict[str, Placement | None]] = field(default_factory=dict)  # pod -> MIG UUID -> placement
    last_error: str = ""
    completed: deque[str] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    lost: set[str] = field(default_factory=set)
    lost_records: set[str] = field(default_factory=set)
    double_booked: set[str] = field(default_factory=set)
    leaks: dict[str, tuple[Placement, str, str]] = field(default_factory=dict)  # MIG UUID -> placement, crash, who
    verbose: bool = False
    round: int = 0
    restart_s: list[float] = field(default_factory=list)
    kubelet_s: list[float] = field(default_factory=list)
    rss: list[tuple[int, int, float]] = field(default_factory=list)  # (round, agent incarnation, MiB)
    incarnation: int = 0
    armed: bool = False

    # -- the agent -------------------------------------------------------------------------------
    def start_agent(self) -> None:
        """Start the agent (armed to die before its k-th mutating NVML call with some probability)."""
        for _ in range(10):
            self.armed = self.rng.random() < self.arm_probability
            crash = f"mutating:{self.rng.randint(1, 6)}" if self.armed else None
            started = time.monotonic()
            try:
                self.node.start_agent(crash_before=crash, timeout=60)
            except RuntimeError:  # it exited (the armed crash fired in the start's own reconcile) or hung
                exited = self.node.proc is not None and self.node.proc.poll() is not None
                self.node.kill_agent()
                if exited:
                    self.crashes["before an NVML step, in the restart's reconcile"] += 1
                else:
                    self.counts["agent starts that did not get ready within 60 s"] += 1
                continue
            self.restart_s.append(time.monotonic() - started)
            self.incarnation += 1
            return
        raise RuntimeError("the agent did not start 10 times in a row")

    def alive(self) -> bool:
        return self.node.proc is not None and self.node.proc.poll() is None

    def died(self, wait: float) -> bool:
        proc = self.node.proc
        if proc is None:
            return True
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True

    # -- the node's truth ------------------------------------------------------------------------
    def instances(self) -> dict[str, Placement]:
        return {hw.mig_uuid: (d.index, hw.profile, hw.start) for d in self.node.backend.devices()
                for hw in d.instances if hw.mig_uuid}

    def check(self, now: dict[str, Placement]) -> None:
        """Every live pod's instances exist where they were and are in its record; none held twice."""
        records = self.node.records()
        seen: Counter[str] = Counter()
        for pod, held in self.live.items():
            for uuid, placement in held.items():
                seen[uuid] += 1
                if uuid not in now or (placement is not None and now[uuid] != placement):
                    self.lost.add(uuid)
                elif placement is None:
                    held[uuid] = now[uuid]
                if records.get(uuid) != pod:
                    self.lost_records.add(uuid)
        self.double_booked.update(u for u, n in seen.items() if n > 1)

    def recorded_by(self, uuid: str) -> str:
        """Which pod's record (any phase) names this MIG UUID: 'Failed pod default/p7', or 'no pod'."""
        for pod in self.node.api.pods(self.node.node):
            raw = pod["metadata"].get("annotations", {}).get(INSTANCES_ANNOTATION)
            if raw and any(h.get("mig") == uuid for held in json.loads(raw).values() for h in held):
                return f"{pod.get('status', {}).get('phase', '?')} pod default/{pod['metadata']['name']}"
        return "no pod"

    def free_places(self, now: dict[str, Placement]) -> set[Placement]:
        held = {u for pod in self.live.values() for u in pod}
        return {p for u, p in now.items() if u not in held}

    def recover(self, kind: str, free_before: set[Placement]) -> None:
        """Count the crash, start the agent again, look for leaks and lost instances."""
        self.crashes[kind] += 1
        self.node.kill_agent()  # reap it
        self.node.proc = None
        self.start_agent()
        now = self.instances()
        held = {u for pod in self.live.values() for u in pod}
        leaked = {u: p for u, p in now.items() if u not in held and p not in free_before and u not in self.leaks}
        for uuid, placement in leaked.items():
            self.leaks[uuid] = (placement, kind, self.recorded_by(uuid))
        if self.verbose:
            print(f"round {self.round}: agent killed {kind}; restarted; "
                  f"{len(now)} instances, leaked {leaked or 'none'}", flush=True)
        self.check(now)

    # -- the cluster's side ----------------------------------------------------------------------
    def finish_some(self) -> None:
        while self.live and self.rng.random() < 0.45:
            name = self.rng.choice(sorted(self.live))
            del self.live[name]
            self.node.api.set_pod_phase("default", name, "Succeeded")
            self.completed.append(name)
        while len(self.completed) > KEEP_COMPLETED:
            self.node.api.delete_pod("default", self.completed.popleft(), grace_period_s=0)

    def admit(self, name: str, limits: dict[str, str]) -> tuple[bool, grpc.StatusCode | None]:
        self.node.api.add_pod(pod_manifest(name, node=self.node.node, limits=limits))
        count = int(limits.get(RESOURCE, "1"))
        ids = [d.id for d in self.node.kubelet.devices(RESOURCE) if d.healthy][:count]
        try:
            response = self.node.kubelet.allocate(RESOURCE, ids, timeout=30)
        except grpc.RpcError as exc:
            self.node.api.set_pod_phase("default", name, "Failed")
            self.completed.append(name)
            self.last_error = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            return False, exc.code() if callable(getattr(exc, "code", None)) else None
        except Exception:  # e.g. no registration at all: the kubelet cannot even call
            self.node.api.set_pod_phase("default", name, "Failed")
            self.completed.append(name)
            return False, None
        self.node.api.set_pod_phase("default", name, "Running")
        uuids = response.container_responses[0].envs.get("NVIDIA_VISIBLE_DEVICES", "")
        self.live[name] = {u: None for u in uuids.split(",") if u}
        return True, None

    def restart_kubelet(self) -> None:
        before = self.node.kubelet.registration(RESOURCE)
        expected = len(self.node.kubelet.devices(RESOURCE))
        started = time.monotonic()
        self.node.kubelet.restart()
        try:
            self.node.kubelet.wait_for_registration(RESOURCE, 30, after=before)
            self.node.kubelet.wait_for_devices(
                RESOURCE, lambda ds: len(ds) == expected and all(d.healthy for d in ds), 30)
        except TimeoutError:
            self.counts["kubelet restarts not followed by a registration within 30 s"] += 1
            return
        self.kubelet_s.append(time.monotonic() - started)


def run(args: argparse.Namespace) -> tuple[Soak, int, float]:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hs-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        node = ProcessNode(workdir, sim_gpus=GPUS, node="soak", extra_args=(
            "--policy", args.policy, "--geometries", args.geometries, "--state-dir", str(workdir / "state"),
            "--reconcile-interval", "5"))
        soak = Soak(node, random.Random(args.seed), verbose=args.verbose)
        rng = soak.rng
        rounds = 0
        try:
            soak.start_agent()
            while rounds < args.rounds and time.monotonic() - began < args.max_seconds:
                rounds += 1
                soak.round = rounds
                if not soak.alive():  # died on its own: an armed crash fired in a background reconcile
                    soak.recover("before an NVML step, in a background reconcile", soak.free_places(soak.instances()))
                soak.finish_some()
                now = soak.instances()
                soak.check(now)
                free_before = soak.free_places(now)
                if rng.random() < 1 / args.kubelet_every:
                    soak.restart_kubelet()
                    soak.counts["kubelet restarts"] += 1
                kill = rng.random() < 1 / args.kill_every
                if kill and rng.random() < 0.5:
                    assert soak.node.proc is not None
                    os.kill(soak.node.proc.pid, signal.SIGKILL)
                    soak.died(10)
                    soak.recover("between two admissions", free_before)
                    kill = False
                timer: threading.Timer | None = None
                if kill:
                    assert soak.node.proc is not None
                    timer = threading.Timer(rng.uniform(0.0, 0.08), os.kill, (soak.node.proc.pid, signal.SIGKILL))
                    timer.start()
                soak.counts["pods submitted"] += 1
                ok, code = soak.admit(f"p{rounds}", next_pod(rng))
                if timer is not None:
                    timer.join()
                    soak.died(10)
                    soak.counts["admitted" if ok else "failed by the crash"] += 1
                    soak.recover("at a random moment of an Allocate", free_before)
                elif not ok and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, None) and soak.died(3):
                    soak.counts["failed by the crash"] += 1
                    soak.recover("before an NVML step, in an Allocate", free_before)
                else:
                    soak.counts["admitted" if ok else "refused cleanly"] += 1
                if rounds % 10 == 1 and soak.alive():
                    assert soak.node.proc is not None
                    soak.rss.append((rounds, soak.incarnation, rss_mib(soak.node.proc.pid)[0]))
            # the end: the node still works and nothing was lost
            if not soak.alive():
                soak.recover("before an NVML step, in a background reconcile", soak.free_places(soak.instances()))
            assert soak.node.proc is not None
            soak.rss.append((rounds, soak.incarnation, rss_mib(soak.node.proc.pid)[0]))
            soak.finish_some()
            soak.check(soak.instances())
            soak.counts["instances at the end"] = len(soak.instances())
            soak.counts["instances held by live pods at the end"] = sum(len(h) for h in soak.live.values())
            # every pod ends: a whole-GPU pod must now fit, so no leaked or stuck instance blocks any GPU
            for name in sorted(soak.live):
                del soak.live[name]
                soak.node.api.set_pod_phase("default", name, "Succeeded")
            final, _ = soak.admit("final", {"nvidia.com/gpumem-percentage": "100"})
            soak.counts["final pod admitted" if final else "final pod refused"] += 1
            if not final:
                print(f"the final pod was refused: {soak.last_error}", file=sys.stderr)
        finally:
            node.close()
    return soak, rounds, time.monotonic() - began


def report(soak: Soak, rounds: int, elapsed: float, args: argparse.Namespace) -> str:
    c = soak.counts
    crashes = sum(soak.crashes.values())
    rows: list[tuple[str, str, str]] = [
        ("rounds run (planned, time cap)", f"{rounds} ({args.rounds}, {args.max_seconds:.0f} s) in {elapsed:.0f} s",
         ""),
        ("pods submitted", str(c["pods submitted"]), ""),
        ("  admitted", str(c["admitted"]), ""),
        ("  refused cleanly (nothing fits)", str(c["refused cleanly"]), ""),
        ("  failed because the agent was killed during their Allocate", str(c["failed by the crash"]), ""),
        ("agent SIGKILLs injected", str(crashes), ""),
        *((f"  {kind}", str(n), "") for kind, n in sorted(soak.crashes.items())),
        ("kubelet restarts", str(c["kubelet restarts"]), ""),
        ("  re-registered, all devices healthy: p50 / max",
         f"{ms(percentile(soak.kubelet_s, 50), 0)} / {ms(max(soak.kubelet_s, default=math.nan), 0)}", ""),
        ("  not re-registered within 30 s", str(c["kubelet restarts not followed by a registration within 30 s"]),
         "0"),
        ("agent starts that did not get ready within 60 s",
         str(c["agent starts that did not get ready within 60 s"]), "0"),
        ("agent starts: start -> registered, devices healthy p50 / max",
         f"{ms(percentile(soak.restart_s, 50), 0)} / {ms(max(soak.restart_s, default=math.nan), 0)}", ""),
        ("instances lost (live pod's MIG UUID missing or moved)", str(len(soak.lost)), "0"),
        ("live pods whose record lacks their MIG UUID", str(len(soak.lost_records)), "0"),
        ("MIG instances held by two live pods", str(len(soak.double_booked)), "0"),
        ("new unheld instances after a recovery", str(len(soak.leaks)), ""),
        ("  named by the record of the pod whose Allocate the crash failed (free, reusable)",
         str(sum(1 for _, _, who in soak.leaks.values() if who != "no pod")), ""),
        ("  named by no record (orphans, leaked)",
         str(sum(1 for _, _, who in soak.leaks.values() if who == "no pod")), "0"),
        ("instances at the end (held by live pods)",
         f"{c['instances at the end']} ({c['instances held by live pods at the end']})", ""),
        ("all pods ended: a whole-GPU pod admitted", "yes" if c["final pod admitted"] else "no", "yes"),
    ]
    if soak.rss:
        first, last = soak.rss[0], soak.rss[-1]
        peak = max(soak.rss, key=lambda s: s[2])
        by_life: dict[int, list[tuple[int, int, float]]] = {}
        for sample in soak.rss:
            by_life.setdefault(sample[1], []).append(sample)
        longest = max(by_life.values(), key=lambda s: s[-1][0] - s[0][0])
        rows += [
            ("agent RSS, first / last sample",
             f"{first[2]:.1f} MiB (round {first[0]}) / {last[2]:.1f} MiB (round {last[0]})", "< 80 MiB"),
            ("  highest sample", f"{peak[2]:.1f} MiB (round {peak[0]})", ""),
            ("  longest-lived agent process, first / last sample",
             f"{longest[0][2]:.1f} / {longest[-1][2]:.1f} MiB (rounds {longest[0][0]}-{longest[-1][0]})", ""),
        ]
    widths = [max(len(r[i]) for r in [("measurement", "value", "target"), *rows]) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [("measurement", "value", "target"), tuple("-" * w for w in widths), *rows]]
    if soak.leaks:
        lines.append("new unheld instances after a recovery (GPU, profile, start; crash kind; whose record names it):\n"
                     + "\n".join(
            f"  {u} {p}; {kind}; {who}" for u, (p, kind, who) in sorted(soak.leaks.items())))
    if soak.lost:
        lines.append("lost: " + ", ".join(sorted(soak.lost)))
    if soak.rss:
        series = " ".join(f"{r}:{m:.0f}" for r, _, m in soak.rss[:: max(1, len(soak.rss) // 12)])
        lines.append(f"RSS samples (round:MiB): {series}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="150 rounds or 50 s")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=15, help="mean rounds between injected agent SIGKILLs")
    parser.add_argument("--kubelet-every", type=float, default=25, help="mean rounds between kubelet restarts")
    parser.add_argument("--verbose", action="store_true", help="a line per crash")
    parser.add_argument("--policy", default="best-fit")
    parser.add_argument("--geometries", default="any")
    args = parser.parse_args()
    args.rounds = args.rounds or (150 if args.quick else 800)
    args.max_seconds = args.max_seconds or (50.0 if args.quick else 270.0)
    logging.basicConfig(level=logging.CRITICAL)
    soak, rounds, elapsed = run(args)
    print(f"soak: the agent subprocess ({args.policy}/{args.geometries}) on {GPUS.replace(':', ' x ')}, "
          f"seed {args.seed}")
    print(report(soak, rounds, elapsed, args))
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
