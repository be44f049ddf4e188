"""Per-GPU locks: two plans on one GPU never interleave; plans on different GPUs run at the same time."""

from __future__ import annotations

import threading
import time
from typing import Any

from hami_mig.mig.plan import Operation
from hami_mig.nvml import NvmlBackend
from hami_mig.nvml.locks import GpuLocks
from hami_mig.testing.nvmlsim import NvmlSim


class TracingSim(NvmlSim):
    """Records which thread made each mutating call, and when."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.trace: list[tuple[str, float, float]] = []
        self._trace_lock = threading.Lock()

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, *args: Any) -> Any:
        t0 = time.monotonic()
        out = super().nvmlDeviceCreateGpuInstanceWithPlacement(*args)
        with self._trace_lock:
            self.trace.append((threading.current_thread().name, t0, time.monotonic()))
        return out


def run_two(sim: TracingSim, plans: dict[str, list[Operation]]) -> None:
    backend = NvmlBackend(sim)
    backend.init()
    sim.set_latency(0.003)
    threads = [threading.Thread(target=backend.apply, args=(ops,), name=name) for name, ops in plans.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


def ones(gpu: int, starts: range) -> list[Operation]:
    return [Operation("create", gpu, "1g.10gb", s) for s in starts]


def test_same_gpu_plans_serialize() -> None:
    sim = TracingSim("A100-SXM4-80GB:2")
    run_two(sim, {"a": ones(0, range(0, 3)), "b": ones(0, range(3, 6))})
    names = [name for name, _t0, _t1 in sorted(sim.trace, key=lambda t: t[1])]
    assert len(names) == 6
    assert names in (["a"] * 3 + ["b"] * 3, ["b"] * 3 + ["a"] * 3)  # one whole plan, then the other


def test_different_gpu_plans_overlap() -> None:
    sim = TracingSim("A100-SXM4-80GB:2")
    run_two(sim, {"a": ones(0, range(0, 4)), "b": ones(1, range(0, 4))})
    spans = {name: (min(t0 for n, t0, _ in sim.trace if n == name), max(t1 for n, _, t1 in sim.trace if n == name))
             for name in ("a", "b")}
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1 and b0 < a1  # the two plans' mutation windows intersect


def test_locks_are_taken_in_order_and_released_on_error() -> None:
    locks = GpuLocks()
    try:
        with locks.hold(["GPU-b", "GPU-a"]):
            assert locks.lock("GPU-a").locked() and locks.lock("GPU-b").locked()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not locks.lock("GPU-a").locked() and not locks.lock("GPU-b").locked()
