"""Fault injection and call accounting for the simulator: failures, hooks, latency, per-call counts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hami_mig.testing.nvmlsim.state import FailRule, SimState

# Friendly names for the mutating calls; a rule may also name any nvml* function exactly.
KINDS: dict[str, frozenset[str]] = {
    "create_gi": frozenset({"nvmlDeviceCreateGpuInstance", "nvmlDeviceCreateGpuInstanceWithPlacement"}),
    "create_ci": frozenset({"nvmlGpuInstanceCreateComputeInstance",
                            "nvmlGpuInstanceCreateComputeInstanceWithPlacement"}),
    "destroy_gi": frozenset({"nvmlGpuInstanceDestroy"}),
    "destroy_ci": frozenset({"nvmlComputeInstanceDestroy"}),
}
KINDS["create"] = KINDS["create_gi"] | KINDS["create_ci"]
KINDS["destroy"] = KINDS["destroy_gi"] | KINDS["destroy_ci"]
KINDS["mutating"] = KINDS["create"] | KINDS["destroy"] | {"nvmlDeviceSetMigMode"}


def matches(match: str, name: str) -> bool:
    return name in KINDS.get(match, frozenset({match}))


def check_match(match: str) -> None:
    if match not in KINDS and not match.startswith("nvml"):
        raise ValueError(f"unknown call kind {match!r}: use one of {', '.join(KINDS)} or an nvml* function name")


@dataclass
class _Hook:
    match: str
    nth: int
    action: Callable[[], None]
    gpu: int | None
    seen: int = 0


class Faults:
    """In-process parts of fault injection (hooks and latency hold callables/timers; counts are per process).

    Failure rules live in the shared state instead, so a rule set by one process fires in another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._hooks: list[_Hook] = []
        self._latency: dict[str, float] = {}
        self._default_latency = 0.0

    def set_latency(self, seconds: float, names: Iterable[str] | None = None) -> None:
        with self._lock:
            if names is None:
                self._default_latency = seconds
            else:
                for n in names:
                    self._latency[n] = seconds

    def add_hook(self, match: str, nth: int, action: Callable[[], None], gpu: int | None) -> None:
        check_match(match)
        with self._lock:
            self._hooks.append(_Hook(match, nth, action, gpu))

    def before(self, name: str, gpu: int | None) -> None:
        """Count, sleep (outside any lock, so calls on different GPUs overlap), run due hooks."""
        due: list[Callable[[], None]] = []
        with self._lock:
            self.calls[name] += 1
            delay = self._latency.get(name, self._default_latency)
            for hook in list(self._hooks):
                if matches(hook.match, name) and (hook.gpu is None or hook.gpu == gpu):
                    hook.seen += 1
                    if hook.seen == hook.nth:
                        self._hooks.remove(hook)
                        due.append(hook.action)
        if delay > 0:
            time.sleep(delay)
        for action in due:
            action()

    def mutating_calls(self) -> int:
        with self._lock:
            return sum(n for name, n in self.calls.items() if matches("mutating", name))

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()


def due_failure(state: SimState, name: str, gpu: int | None) -> int | None:
    """Advance the matching rules; the NVML code of the first one whose turn it is (that rule is consumed)."""
    hit: FailRule | None = None
    for rule in list(state.fail_rules):
        if matches(rule.match, name) and (rule.gpu is None or rule.gpu == gpu):
            rule.seen += 1
            if rule.seen >= rule.nth and hit is None:
                hit = rule
                state.fail_rules.remove(rule)
    return None if hit is None else hit.error
