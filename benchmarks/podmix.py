"""Shared by benchmarks/agent.py and benchmarks/soak.py: the seeded pod mix and a process' memory."""

from __future__ import annotations

import random
from pathlib import Path

SIZES = (4000, 8000, 9000, 15000, 19000, 30000, 40000, 70000)  # gpumem, MiB
PERCENTS = (10, 25, 50)  # gpumem-percentage


def next_pod(rng: random.Random) -> dict[str, str]:
    """70% gpumem in MiB, 20% gpumem-percentage, 10% two instances (each on its own GPU)."""
    kind = rng.random()
    if kind < 0.7:
        return {"nvidia.com/gpumem": str(rng.choice(SIZES))}
    if kind < 0.9:
        return {"nvidia.com/gpumem-percentage": str(rng.choice(PERCENTS))}
    return {"nvidia.com/gpu": "2", "nvidia.com/gpumem": str(rng.choice((8000, 19000)))}


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]
