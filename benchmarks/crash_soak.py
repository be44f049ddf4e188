"""Crash soak: the agent SIGKILLed at random steps, in Allocates and in its own recovery, with NVML faults
injected into recovery; after every recovery the node is checked. Prints a table and asserts nothing.

    .venv/bin/python benchmarks/crash_soak.py                  # 60 cycles, seed 1
    .venv/bin/python benchmarks/crash_soak.py --cycles 200 --seed 7

The agent is `hami-mig device-plugin --backend sim --sim-state FILE --state-dir DIR` in its own process
(tests/reliability/harness.py's ProcessNode) on 2 simulated A100-SXM4-80GB, between a fake API server
(real HTTP) and a fake kubelet (real gRPC). Each cycle: running pods end (each with probability 0.4),
one pod may be admitted, then the agent is killed in one of three ways: between two admissions; at a
random moment (0-80 ms) of an Allocate; or just before an NVML call of the next (up to 6) Allocates: the
k-th mutating one (create/destroy of a GI or CI, k in 1..4), or right between a CI and a GI operation
(the 1st or 2nd GI destroy, or the 1st CI create). Then it is started again until it stays up; when
there is something to recover (a journalled instance that exists, or a GPU instance without compute
instance), each restart mostly first gets NVML failures injected into the calls its recovery will make
(destroy of a CI or GI, create of a CI; UNKNOWN, GPU_IS_LOST, INSUFFICIENT_RESOURCES or IN_USE; at most
3 not yet fired at a time), and is often killed itself before its k-th mutating call (k in 1..3), i.e.
in the middle of its recovery. Once it is up (its first reconcile runs before it registers) the node is
checked:

* in-use lost: a live pod's MIG UUID missing, or at another placement; must be 0.
* leaked instances: an instance no live pod holds, at a placement that was not free capacity just before
  the kill, that no pod's record names; must be 0. One the record of the pod whose Allocate the kill
  failed names is free for reuse (the kubelet failed the pod after the record was written): counted apart.
* GPU instances without a compute instance after reconcile; must be 0.
* seconds to recover: from the kill to the agent registered with all devices healthy and the node clean,
  every restart included (those killed during recovery, and the clean stop of an armed agent whose
  recovery ended before its crash point); apart, the start that stayed up alone. Mostly Python start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pynvml  # noqa: E402
from podmix import next_pod  # noqa: E402
from soak import Placement, Soak  # noqa: E402
from timing import percentile  # noqa: E402

from tests.reliability.harness import ProcessNode  # noqa: E402

GPUS = "A100-SXM4-80GB:2"
MAX_PENDING_FAULTS = 3
FINISH = 0.4  # chance that a running pod ends in a cycle
ARMED_ADMISSIONS = 6  # admissions an armed agent gets to reach its crash point before it is killed anyway
ARMED_RESTARTS = 3  # restarts per cycle that may be killed in their recovery
FAULT_ERRORS = {
    "UNKNOWN": pynvml.NVML_ERROR_UNKNOWN,
    "GPU_IS_LOST": pynvml.NVML_ERROR_GPU_IS_LOST,
    "INSUFFICIENT_RESOURCES": pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES,
    "IN_USE": pynvml.NVML_ERROR_IN_USE,
}


@dataclass
class CrashSoak(Soak):
    """Soak's pods, admissions and checks; its own kills, faults and recovery checks."""

    cycle: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    recover_s: list[float] = field(default_factory=list)
    start_s: list[float] = field(default_factory=list)  # the start that stayed up: process start -> registered
    gis_left: dict[int, list[tuple[int, str, int]]] = field(default_factory=dict)  # cycle -> GIs without CI
    faults: Counter[str] = field(default_factory=Counter)
    unclean_cycles: list[int] = field(default_factory=list)
    stuck_starts: int = 0
    failed_starts: list[str] = field(default_factory=list)  # unarmed starts that did not come up

    # -- the agent -------------------------------------------------------------------------------
    def start(self, crash_before: str | None = None) -> bool:
        """Start the agent; False when it died before registering (an armed crash in its recovery) or hung."""
        began = time.monotonic()
        try:
            self.node.start_agent(crash_before=crash_before, timeout=60)
        except RuntimeError as exc:
            exited = self.node.proc is not None and self.node.proc.poll() is not None
            self.node.kill_agent()
            if not exited:
                self.stuck_starts += 1
            if crash_before is None:  # nothing armed: the agent itself failed to start
                self.failed_starts.append(f"cycle {self.cycle}: {str(exc)[-400:]}")
            return False
        if crash_before is None:
            self.start_s.append(time.monotonic() - began)
        return True

    def kill(self) -> None:
        assert self.node.proc is not None
        os.kill(self.node.proc.pid, signal.SIGKILL)
        self.died(10)
        self.node.kill_agent()  # reap

    def recovery_work(self) -> tuple[str, ...]:
        """The NVML calls the restart's recovery will make: destroys for journalled instances that exist,
        and a destroy or a CI create for each GPU instance without compute instance."""
        calls: set[str] = set()
        if self.node.gis_without_ci():
            calls |= {"destroy_gi", "create_ci"}
        journal = self.node.state_dir / "allocate-journal.json"
        if journal.exists():
            devices = {d.uuid: d for d in self.node.backend.devices()}
            for entry in json.loads(journal.read_text()).get("entries", []):
                for c in entry["creates"]:
                    dev = devices.get(c["gpu_uuid"])
                    hw = dev.find(c["profile"], c["start"]) if dev is not None else None
                    if hw is not None:
                        calls |= {"destroy_ci", "destroy_gi"} if hw.compute else {"destroy_gi"}
        return tuple(sorted(calls))

    def inject_faults(self, calls: tuple[str, ...]) -> int:
        """NVML failures for those calls, up to 3 pending at a time; how many were set."""
        room = MAX_PENDING_FAULTS - self.node.sim.pending_failures()
        n = self.rng.randint(1, room) if room > 0 else 0
        for _ in range(n):
            kind, error = self.rng.choice(calls), self.rng.choice(sorted(FAULT_ERRORS))
            self.node.sim.fail(kind, 1, FAULT_ERRORS[error])
            self.faults[f"  {kind} {error}"] += 1
        return n

    def finish_some(self) -> None:
        """Each running pod ends with probability FINISH: the node keeps room, so Allocates reshape."""
        for name in sorted(self.live):
            if self.rng.random() < FINISH:
                del self.live[name]
                self.node.api.set_pod_phase("default", name, "Succeeded")
                self.completed.append(name)
        super().finish_some()

    # -- one cycle ------------------------------------------------------------------------------
    def admit_next(self) -> bool:
        """Submit and admit one pod; True when the agent survived it."""
        self.counts["pods submitted"] += 1
        ok, _code = self.admit(f"p{self.counts['pods submitted']}", next_pod(self.rng))
        alive = not self.died(0.5) if not ok else self.alive()
        self.counts["admitted" if ok else ("failed by the kill" if not alive else "refused cleanly")] += 1
        return alive

    def crash_point(self) -> str:
        """Any mutating NVML call of the next Allocates, or one right between a CI and a GI operation."""
        way = self.rng.random()
        if way < 0.5:
            return f"mutating:{self.rng.randint(1, 4)}"
        if way < 0.75:
            return f"destroy_gi:{self.rng.randint(1, 2)}"  # a free instance's CI destroyed, its GI not yet
        return "create_ci:1"  # a GI created, its CI not yet

    def kill_somewhere(self) -> tuple[set[Placement], float]:
        """Kill the running agent at a random step; (free placements just before, when it died)."""
        way = self.rng.random()
        free_before = self.free_places(self.instances())
        if way < 0.2:
            self.kill()
            self.kills["between two admissions"] += 1
        elif way < 0.4:
            assert self.node.proc is not None
            timer = threading.Timer(self.rng.uniform(0.0, 0.08), os.kill, (self.node.proc.pid, signal.SIGKILL))
            timer.start()
            self.admit_next()
            timer.join()
            self.died(10)
            self.node.kill_agent()
            self.kills["at a random moment of an Allocate"] += 1
        else:
            self.node.stop_agent()  # a clean stop, to arm the next process
            if not self.start(crash_before=self.crash_point()):
                self.kills["before an NVML step, in a start-up reconcile"] += 1
            else:
                for _ in range(ARMED_ADMISSIONS):
                    free_before = self.free_places(self.instances())
                    if not self.admit_next():
                        self.node.kill_agent()
                        self.kills["before an NVML step, in an Allocate"] += 1
                        break
                else:
                    self.kill()
                    self.kills["between two admissions"] += 1
        return free_before, time.monotonic()

    def restart_until_up(self, free_before: set[Placement], killed_at: float) -> None:
        """Start the agent until it stays up (faults injected, killed during recovery at random), then check."""
        injected = 0
        armed = ARMED_RESTARTS
        while True:
            work = self.recovery_work()
            if work and self.rng.random() < 0.9:
                injected += self.inject_faults(work)
            if armed and self.rng.random() < (0.6 if work else 0.2):
                armed -= 1
                if not self.start(crash_before=f"mutating:{self.rng.randint(1, 3)}"):
                    self.kills["before an NVML step, in recovery after a restart"] += 1
                    continue
                self.node.stop_agent()  # it recovered without reaching the armed step: start it unarmed
            if self.start():
                break
            if len(self.failed_starts) > 5:
                raise RuntimeError("the agent failed to start:\n" + "\n".join(self.failed_starts))
        now = self.instances()
        gis = self.node.gis_without_ci()
        self.recover_s.append(time.monotonic() - killed_at)
        fired = injected - self.node.sim.pending_failures()
        self.node.sim.clear_failures()  # faults are for recovery only: none left for the next Allocates
        held = {u for pod in self.live.values() for u in pod}
        leaked = {u: p for u, p in now.items() if u not in held and p not in free_before and u not in self.leaks}
        for uuid, placement in leaked.items():
            self.leaks[uuid] = (placement, f"cycle {self.cycle}", self.recorded_by(uuid))
        lost_before = len(self.lost)
        self.check(now)
        if gis:
            self.gis_left[self.cycle] = gis
        orphans = [u for u in leaked if self.leaks[u][2] == "no pod"]
        clean = not gis and not orphans and len(self.lost) == lost_before
        self.faults["injected into recovery"] += injected
        self.faults["fired"] += fired
        self.faults["fired, node clean afterwards (survived)"] += fired if clean else 0
        if not clean:
            self.unclean_cycles.append(self.cycle)
        if self.verbose:
            print(f"cycle {self.cycle}: {sum(self.kills.values())} kills so far; {fired}/{injected} faults fired; "
                  f"{len(now)} instances; GIs without CI {gis or 'none'}; leaked {leaked or 'none'}", flush=True)

    def run_cycle(self) -> None:
        self.finish_some()
        if self.rng.random() < 0.5:
            self.admit_next()  # the kill may come while the node is fuller
        self.restart_until_up(*self.kill_somewhere())


def run(args: argparse.Namespace) -> tuple[CrashSoak, float]:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hcs-", dir="/tmp") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        node = ProcessNode(workdir, sim_gpus=GPUS, node="crash-soak", extra_args=(
            "--policy", args.policy, "--geometries", args.geometries, "--state-dir", str(workdir / "state")))
        soak = CrashSoak(node, random.Random(args.seed), verbose=args.verbose)
        try:
            if not soak.start():
                raise RuntimeError("the agent did not start")
            for cycle in range(1, args.cycles + 1):
                soak.cycle = soak.round = cycle
                soak.run_cycle()
        finally:
            node.close()
    return soak, time.monotonic() - began


def report(soak: CrashSoak, elapsed: float, args: argparse.Namespace) -> str:
    c = soak.counts
    orphans = sum(1 for _p, _k, who in soak.leaks.values() if who == "no pod")
    rows: list[tuple[str, str, str]] = [
        ("cycles (seed)", f"{args.cycles} ({args.seed}) in {elapsed:.0f} s", ""),
        ("agent SIGKILLs", str(sum(soak.kills.values())), ""),
        *((f"  {kind}", str(n), "") for kind, n in sorted(soak.kills.items())),
        ("NVML faults injected into recovery (fired)", f"{soak.faults['injected into recovery']} "
         f"({soak.faults['fired']})", ""),
        ("  fired, node clean afterwards (survived)", str(soak.faults["fired, node clean afterwards (survived)"]),
         "all fired"),
        ("pods submitted: admitted / refused cleanly / failed by the kill",
         f"{c['pods submitted']}: {c['admitted']} / {c['refused cleanly']} / {c['failed by the kill']}", ""),
        ("in-use lost (a live pod's MIG UUID missing or moved)", str(len(soak.lost)), "0"),
        ("live pods whose record lacks their MIG UUID", str(len(soak.lost_records)), "0"),
        ("leaked instances (no live pod, no record, not free before)", str(orphans), "0"),
        ("  new free instances named by the killed Allocate's pod record", str(len(soak.leaks) - orphans), ""),
        ("GPU instances without compute instance after reconcile",
         str(sum(len(g) for g in soak.gis_left.values())), "0"),
        ("seconds to recover (kill -> registered, node checked): p50 / max",
         f"{percentile(soak.recover_s, 50):.2f} / {max(soak.recover_s, default=math.nan):.2f}", ""),
        ("  the start that stayed up (process start -> registered): p50 / max",
         f"{percentile(soak.start_s, 50):.2f} / {max(soak.start_s, default=math.nan):.2f}", ""),
        ("agent starts that hung (no registration, no exit, 60 s)", str(soak.stuck_starts), "0"),
        ("unarmed agent starts that failed", str(len(soak.failed_starts)), "0"),
    ]
    widths = [max(len(r[i]) for r in [("measurement", "value", "target"), *rows]) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [("measurement", "value", "target"), tuple("-" * w for w in widths), *rows]]
    faults = sorted((k, n) for k, n in soak.faults.items() if k.startswith("  "))
    lines.append("faults by call and error: " + ", ".join(f"{k.strip()} x{n}" for k, n in faults))
    if soak.unclean_cycles:
        lines.append(f"cycles not clean after recovery: {soak.unclean_cycles}")
    for cycle, gis in sorted(soak.gis_left.items()):
        lines.append(f"  cycle {cycle}: GPU instances without compute instance {gis}")
    for uuid, (placement, when, who) in sorted(soak.leaks.items()):
        lines.append(f"  new unheld instance {uuid} {placement} ({when}; {who})")
    if soak.lost:
        lines.append("lost: " + ", ".join(sorted(soak.lost)))
    lines += soak.failed_starts
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=60, help="kill-and-recover cycles (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", default="best-fit")
    parser.add_argument("--geometries", default="any")
    parser.add_argument("--verbose", action="store_true", help="a line per cycle")
    parser.add_argument("--workdir", help="keep the agent's log and state here (default: a temporary directory)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    soak, elapsed = run(args)
    print(f"crash soak: the agent subprocess ({args.policy}/{args.geometries}) on {GPUS.replace(':', ' x ')}, "
          f"seed {args.seed}")
    print(report(soak, elapsed, args))
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
