"""A faithful NVML simulator: stands in for the `pynvml` module (same calls, pynvml's structs and errors)."""

from __future__ import annotations

import os
import signal

from hami_mig.testing.nvmlsim.api_device import DeviceCalls
from hami_mig.testing.nvmlsim.api_mig import MigCalls
from hami_mig.testing.nvmlsim.counts import CallStats, read_call_stats
from hami_mig.testing.nvmlsim.faults import KINDS, parse_latency
from hami_mig.testing.nvmlsim.legacy import LegacyCalls
from hami_mig.testing.nvmlsim.spec import DEFAULT_SPEC, parse_spec
from hami_mig.testing.nvmlsim.symbols import DEFAULT_DRIVER
from hami_mig.testing.nvmlsim.variants import GpuVariants

STATE_ENV = "HAMI_MIG_SIM_STATE"
DRIVER_ENV = "HAMI_MIG_SIM_DRIVER"


class NvmlSim(DeviceCalls, MigCalls, LegacyCalls, GpuVariants):
    """Pass it where pynvml goes: `NvmlBackend(NvmlSim("A100-SXM4-80GB:2"))`.

    `state_file` (or $HAMI_MIG_SIM_STATE via `from_env`) shares the GPUs between processes;
    `driver_version` (or $HAMI_MIG_SIM_DRIVER) plays an older driver that lacks the newer NVML symbols.
    """


CRASH_ENV = "HAMI_MIG_SIM_CRASH_BEFORE"
LATENCY_ENV = "HAMI_MIG_SIM_LATENCY"


def from_env(spec: str | None = None, state_file: str | os.PathLike[str] | None = None, seed: int = 0) -> NvmlSim:
    """The CLI's simulator: state file from the argument, else $HAMI_MIG_SIM_STATE, else in-process only.

    $HAMI_MIG_SIM_CRASH_BEFORE=`MATCH:N` (e.g. `mutating:3`) SIGKILLs this process just before the Nth
    matching call: the crash tests use it to stop the agent right after a given NVML step.
    $HAMI_MIG_SIM_LATENCY=`query=1ms,create=50ms,destroy=50ms` makes every call take about as long as
    on a driver (kinds and durations: `parse_latency`).
    """
    path = state_file if state_file is not None else os.environ.get(STATE_ENV) or None
    latency = parse_latency(os.environ[LATENCY_ENV]) if os.environ.get(LATENCY_ENV) else []
    sim = NvmlSim(spec, seed=seed, state_file=path, driver_version=os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER)
    for kind, seconds in latency:
        sim.set_latency(seconds, None if kind is None else [kind])
    crash = os.environ.get(CRASH_ENV)
    if crash:
        match, _, nth = crash.rpartition(":")
        sim.on_call(match, int(nth), lambda: os.kill(os.getpid(), signal.SIGKILL))
    return sim


__all__ = ["CRASH_ENV", "DEFAULT_DRIVER", "DEFAULT_SPEC", "DRIVER_ENV", "KINDS", "LATENCY_ENV", "STATE_ENV",
           "CallStats", "NvmlSim", "from_env", "parse_latency", "parse_spec", "read_call_stats"]
