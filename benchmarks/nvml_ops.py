"""NVML cost of admissions on the simulator: calls per discovery, per apply, and mutating ops per admission.

Prints plain-text tables and asserts nothing. The simulator answers in microseconds, so the timings
are the agent's own overhead (Python + ctypes), not the driver's: on real hardware a GI destroy is
about 1 s and a full MIG walk under load about 10 s (mig-hardware.md E), so the call counts matter more.

    .venv/bin/python benchmarks/nvml_ops.py            # 200 admissions per model
    .venv/bin/python benchmarks/nvml_ops.py --quick    # 40
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.nvml import NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim

MODELS = ("A100-SXM4-80GB", "H100-SXM5-80GB", "A30", "H200")


def run(model: str, admissions: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    sim = NvmlSim(f"{model}:2", seed=seed)
    backend = NvmlBackend(sim)
    backend.init()
    held: list[str] = []
    discover_calls: list[int] = []
    discover_ms: list[float] = []
    apply_calls: list[int] = []
    apply_ms: list[float] = []
    mutating: list[int] = []
    refused = 0
    for _ in range(admissions):
        if held and rng.random() < 0.4:  # a pod ends: its instance becomes free (not destroyed)
            held.remove(rng.choice(held))
        sim.reset_counts()
        t0 = time.perf_counter()
        states = list(backend.states(held).values())
        discover_ms.append((time.perf_counter() - t0) * 1000)
        discover_calls.append(sum(sim.calls.values()))
        decision = decide(states, Request(memory_percent=rng.choice((10, 12, 25, 40, 50, 90))), mode="any")
        if not decision.fits:
            refused += 1
            continue
        sim.reset_counts()
        t0 = time.perf_counter()
        result = backend.apply(decision.operations)
        apply_ms.append((time.perf_counter() - t0) * 1000)
        apply_calls.append(sum(sim.calls.values()))
        mutating.append(sim.mutating_calls())
        for a in decision.allocations:
            hw = next(d for d in backend.devices() if d.index == a.gpu_index).find(a.profile, a.start)
            if hw is not None and hw.mig_uuid:
                held.append(hw.mig_uuid)
        del result
    backend.shutdown()
    return {
        "admitted": len(mutating), "refused": refused,
        "mut/adm": statistics.mean(mutating) if mutating else 0.0,
        "mut max": max(mutating, default=0),
        "disc calls": statistics.mean(discover_calls), "disc ms": statistics.median(discover_ms),
        "apply calls": statistics.mean(apply_calls) if apply_calls else 0.0,
        "apply ms": statistics.median(apply_ms) if apply_ms else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n = 40 if args.quick else 200
    cols = ("admitted", "refused", "mut/adm", "mut max", "disc calls", "disc ms", "apply calls", "apply ms")
    print(f"{n} admissions per model on 2 simulated GPUs (planner: any geometry, hami policy)")
    print(f"{'model':<16}" + "".join(f"{c:>12}" for c in cols))
    for model in MODELS:
        row = run(model, n, args.seed)
        print(f"{model:<16}" + "".join(f"{row[c]:>12.1f}" if isinstance(row[c], float) else f"{row[c]:>12}"
                                       for c in cols))


if __name__ == "__main__":
    main()
