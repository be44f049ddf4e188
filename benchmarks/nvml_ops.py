"""NVML cost of admissions on the simulator, the way the agent reads: once in full, then only what changes.

Prints one table and asserts nothing. Per model, on 2 simulated GPUs, a seeded run of admissions:
"first read" is the start-up read of every GPU (handles, names, profile tables and placements, the
instances), "full read" a later full re-read (the agent's periodic resync: the fixed facts are not
asked again), "check" the per-Allocate check of the GPUs a plan touches, "apply" the calls of the
plan's creates and destroys besides the mutating ones themselves (execution-time safety checks and
read-backs), "mut/adm" the mutating calls per admitted pod. The simulator answers in microseconds:
on a driver each call is a round trip into the kernel, so the counts are what matters.

    .venv/bin/python benchmarks/nvml_ops.py            # 200 admissions per model
    .venv/bin/python benchmarks/nvml_ops.py --quick    # 40
"""

from __future__ import annotations

import argparse
import random
import statistics

from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.nvml import NvmlBackend
from hami_mig.nvml.inventory import NvmlInventory
from hami_mig.testing.nvmlsim import NvmlSim

MODELS = ("A100-SXM4-80GB", "H100-SXM5-80GB", "A30", "H200")


def calls(sim: NvmlSim) -> int:
    return sum(sim.calls.values())


def run(model: str, admissions: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    sim = NvmlSim(f"{model}:2", seed=seed)
    backend = NvmlBackend(sim)
    backend.init()
    inventory = NvmlInventory(backend)
    sim.reset_counts()
    inventory.resync()
    first = calls(sim)
    held: list[str] = []
    check: list[int] = []
    apply: list[int] = []
    mutating: list[int] = []
    refused = 0
    for _ in range(admissions):
        if held and rng.random() < 0.4:  # a pod ends: its instance becomes free (not destroyed)
            held.remove(rng.choice(held))
        states = [d.to_gpu_state(held) for d in inventory.devices() if d.mig_enabled]
        decision = decide(states, Request(memory_percent=rng.choice((10, 12, 25, 40, 50, 90))), mode="any")
        if not decision.fits:
            refused += 1
            continue
        touches = {a.gpu_index: {a.uuid} if a.reuse and a.uuid else set() for a in decision.allocations}
        sim.reset_counts()
        inventory.check(touches)
        check.append(calls(sim))
        sim.reset_counts()
        result = backend.apply(decision.operations, held)
        mutating.append(sim.mutating_calls())
        apply.append(calls(sim) - sim.mutating_calls())
        made = {(s.op.gpu_index, s.op.profile, s.op.start): s.instance for s in result.created}
        for a in decision.allocations:
            rec = made.get((a.gpu_index, a.profile, a.start))
            uuid = a.uuid if a.reuse else rec.mig_uuid if rec else None
            if uuid:
                held.append(uuid)
    sim.reset_counts()
    inventory.resync()
    full = calls(sim)
    backend.shutdown()
    reshaping = [a for a, m in zip(apply, mutating, strict=True) if m]
    return {
        "admitted": len(mutating), "refused": refused,
        "mut/adm": statistics.mean(mutating) if mutating else 0.0,
        "first read": first, "full read": full,
        "check": statistics.mean(check) if check else 0.0,
        "apply": statistics.mean(reshaping) if reshaping else 0.0,
        "apply max": max(reshaping, default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n = 40 if args.quick else 200
    cols = ("admitted", "refused", "mut/adm", "first read", "full read", "check", "apply", "apply max")
    print(f"{n} admissions per model on 2 simulated GPUs (planner: any geometry, hami policy); NVML calls, "
          "mean per admission for check and apply (apply: reshaping admissions, mutating calls not counted)")
    print(f"{'model':<16}" + "".join(f"{c:>12}" for c in cols))
    for model in MODELS:
        row = run(model, n, args.seed)
        print(f"{model:<16}" + "".join(f"{row[c]:>12.1f}" if isinstance(row[c], float) else f"{row[c]:>12}"
                                       for c in cols))


if __name__ == "__main__":
    main()
