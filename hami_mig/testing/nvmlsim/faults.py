"""Fault injection and call accounting for the simulator: failures, hooks, latency, per-call counts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hami_mig.errors import InputError
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
QUERY = "query"  # every call that changes nothing (a latency mode and the call counts use it)


def matches(match: str, name: str) -> bool:
    if match == QUERY:
        return name not in KINDS["mutating"]
    return name in KINDS.get(match, frozenset({match}))


def check_match(match: str) -> None:
    if match not in KINDS and match != QUERY and not match.startswith("nvml"):
        raise ValueError(f"unknown call kind {match!r}: use one of {', '.join([*KINDS, QUERY])} or an nvml* "
                         "function name")


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
        self.nanoseconds: Counter[str] = Counter()  # time inside each call, latency included
        self.shared: Callable[[str, int], None] | None = None  # cross-process counters (a state file's)
        self._hooks: list[_Hook] = []
        self._latency: dict[str, float] = {}  # exact function names first, then kinds, in the order set
        self._default_latency = 0.0

    def set_latency(self, seconds: float, names: Iterable[str] | None = None) -> None:
        """Sleep `seconds` in every call, or in the named functions or kinds (`query`, `create`, `destroy` ...)."""
        with self._lock:
            if names is None:
                self._default_latency = seconds
            else:
                for n in names:
                    check_match(n)
                    self._latency[n] = seconds

    def _delay(self, name: str) -> float:
        if name in self._latency:
            return self._latency[name]
        return next((s for match, s in self._latency.items() if matches(match, name)), self._default_latency)

    def add_hook(self, match: str, nth: int, action: Callable[[], None], gpu: int | None) -> None:
        check_match(match)
        with self._lock:
            self._hooks.append(_Hook(match, nth, action, gpu))

    def before(self, name: str, gpu: int | None) -> None:
        """Count, sleep (outside any lock, so calls on different GPUs overlap), run due hooks."""
        due: list[Callable[[], None]] = []
        with self._lock:
            self.calls[name] += 1
            delay = self._delay(name)
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

    def after(self, name: str, nanoseconds: int) -> None:
        """Add the time a call took (its latency included) to this process' and the shared counters."""
        with self._lock:
            self.nanoseconds[name] += nanoseconds
        if self.shared is not None:
            self.shared(name, nanoseconds)

    def mutating_calls(self) -> int:
        with self._lock:
            return sum(n for name, n in self.calls.items() if matches("mutating", name))

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.nanoseconds.clear()


def parse_latency(text: str, field: str = "HAMI_MIG_SIM_LATENCY") -> list[tuple[str | None, float]]:
    """`query=1ms,create=50ms,destroy=50ms` (or one bare duration for every call) -> [(kind or None, seconds)]."""
    out: list[tuple[str | None, float]] = []
    for part in (p.strip() for p in text.split(",")):
        kind, _, value = part.rpartition("=")
        number = value.strip().lower()
        scale = 1e-3 if number.endswith("ms") else 1e-6 if number.endswith("us") else 1.0
        number = number.removesuffix("ms").removesuffix("us").removesuffix("s")
        try:
            seconds = float(number) * scale
            if kind:
                check_match(kind.strip())
        except ValueError:
            seconds = -1.0
        if not part or seconds < 0 or seconds != seconds:
            raise InputError(field, text, "KIND=DURATION,... with KIND query, create, destroy, mutating, "
                             "create_gi, create_ci, destroy_gi, destroy_ci or an nvml* function, and DURATION "
                             "like 1ms, 250us or 0.05s (one bare DURATION applies to every call)")
        out.append((kind.strip() or None, seconds))
    return out


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
