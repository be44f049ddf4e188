"""Simulator plumbing: handles that are real pynvml pointer types, the call wrapper, and the test-facing controls."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

import pynvml

from hami_mig.errors import InputError
from hami_mig.testing.nvmlsim import driver, symbols
from hami_mig.testing.nvmlsim.counts import CallStats, SharedCounter, read_call_stats
from hami_mig.testing.nvmlsim.faults import KINDS, Faults, check_match, due_failure
from hami_mig.testing.nvmlsim.spec import DEFAULT_SPEC, canonical_spec, new_state
from hami_mig.testing.nvmlsim.state import FailRule, SimCi, SimGi, SimGpu, SimState
from hami_mig.testing.nvmlsim.store import StateStore

KIND_GPU, KIND_GI, KIND_CI, KIND_MIG = 1, 2, 3, 4
_NO_INIT = frozenset({"nvmlInit", "nvmlInitWithFlags"})
# Module attributes the backend may read from "the pynvml module": constants, structs, error classes.
_PASSTHROUGH = ("NVML_", "NVMLError", "c_nvml", "struct_c_nvml", "nvmlStructToFriendlyObject", "nvmlFriendlyObject",
                "NVMLLibraryMismatchError")

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="SimCore")


def make_handle(kind: int, gpu: int, serial: int, ctype: Any) -> Any:
    """An opaque pynvml pointer handle (never dereferenced) that encodes what it points at."""
    return ctypes.cast(ctypes.c_void_p((kind << 40) | (gpu << 32) | serial), ctype)


def unpack_handle(handle: object) -> tuple[int, int, int] | None:
    if not isinstance(handle, ctypes._Pointer):
        return None
    addr = ctypes.cast(handle, ctypes.c_void_p).value or 0
    return addr >> 40, (addr >> 32) & 0xFF, addr & 0xFFFFFFFF


def deref(ref: Any) -> Any:
    """The object behind `byref(x)`, `pointer(x)` or `x` itself, as C would see it."""
    if hasattr(ref, "_obj"):
        return ref._obj
    if isinstance(ref, ctypes._Pointer):
        return ref.contents
    return ref


def _gpu_of(name: str, args: tuple[Any, ...]) -> int | None:
    if not args:
        return None
    if name == "nvmlDeviceGetHandleByIndex" and isinstance(args[0], int):
        return args[0]
    unpacked = unpack_handle(args[0])
    return None if unpacked is None else unpacked[1]


def nvml_call(fn: Callable[Concatenate[S, SimState, P], R]) -> Callable[Concatenate[S, P], R]:
    """Wrap a simulated call: count, latency and hooks, then init check, injected failures, then the body."""
    name = fn.__name__

    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        gpu = _gpu_of(name, args)
        started = time.perf_counter_ns()
        try:
            self.faults.before(name, gpu)
            with self.store.transaction() as state:
                if self._refcount == 0 and name not in _NO_INIT:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
                symbols.require(name, self.driver_branch)
                if state.fail_rules:
                    self.store.mark_dirty()
                    code = due_failure(state, name, gpu)
                    if code is not None:
                        raise pynvml.NVMLError(code)
                if name in KINDS["mutating"]:
                    self.store.mark_dirty()
                return fn(self, state, *args, **kwargs)
        finally:
            self.faults.after(name, time.perf_counter_ns() - started)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = fn.__doc__
    return call


class SimCore:
    """State, handles and the controls tests use (fault injection, busy/idle, lost GPUs, snapshots)."""

    def __init__(self, spec: str | None = None, *, seed: int = 0, state_file: str | os.PathLike[str] | None = None,
                 gi_ids: str = "heap", mig_disabled: Iterable[int] = (),
                 driver_version: str = symbols.DEFAULT_DRIVER) -> None:
        wanted = canonical_spec(spec) if spec is not None else None
        disabled = set(mig_disabled)

        def create() -> SimState:
            state = new_state(spec or DEFAULT_SPEC, seed, gi_ids)
            for gpu in state.gpus:
                if gpu.index in disabled:
                    gpu.mig_current = gpu.mig_pending = 0
            return state

        def check(state: SimState) -> None:
            if wanted is not None and state.spec != wanted:
                raise InputError("--sim-gpus", spec, f"the state file {state_file} already holds {state.spec!r}; "
                                 "pass the same GPUs or remove the file")

        self.faults = Faults()
        self.driver_version = driver_version
        self.driver_branch = symbols.branch_of(driver_version)  # an older branch lacks the newer symbols
        self.store = StateStore(state_file, create, check)
        self.state_file = state_file
        if state_file is not None:  # counts other processes can read (read_call_stats)
            names = {getattr(type(self), a).__name__ for a in dir(type(self)) if a.startswith("nvml")}
            self.faults.shared = SharedCounter(state_file, names).add
        self._refcount = 0
        self._init_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_PASSTHROUGH):
            return getattr(pynvml, name)
        raise AttributeError(f"the NVML simulator has no {name!r}")

    # -- handle resolution (inside a transaction) -------------------------------------------------
    @staticmethod
    def _live(state: SimState, handle: object, kinds: tuple[int, ...]) -> tuple[SimGpu, int, int]:
        """(GPU, handle kind, serial) of a handle of one of `kinds`, failing as the driver does: a foreign or
        out-of-range handle is INVALID_ARGUMENT, one on a lost GPU GPU_IS_LOST."""
        unpacked = unpack_handle(handle)
        if unpacked is None or unpacked[0] not in kinds or unpacked[1] >= len(state.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = state.gpus[unpacked[1]]
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu, unpacked[0], unpacked[2]

    def _gpu(self, state: SimState, handle: object, allow_mig: bool = True) -> SimGpu:
        return self._live(state, handle, (KIND_GPU, KIND_MIG) if allow_mig else (KIND_GPU,))[0]

    def _mig(self, state: SimState, handle: object) -> tuple[SimGpu, SimGi, SimCi] | None:
        """The (GPU, GI, CI) behind a MIG device handle; None for a physical GPU handle."""
        gpu, kind, serial = self._live(state, handle, (KIND_GPU, KIND_MIG))
        if kind != KIND_MIG:
            return None
        return (gpu, *self._ci_by_serial(gpu, serial))

    def _gi(self, state: SimState, handle: object) -> tuple[SimGpu, SimGi]:
        gpu, _, serial = self._live(state, handle, (KIND_GI,))
        for gi in gpu.gis:
            if gi.serial == serial:
                return gpu, gi
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def _ci(self, state: SimState, handle: object) -> tuple[SimGpu, SimGi, SimCi]:
        gpu, _, serial = self._live(state, handle, (KIND_CI,))
        return (gpu, *self._ci_by_serial(gpu, serial))

    @staticmethod
    def _ci_by_serial(gpu: SimGpu, serial: int) -> tuple[SimGi, SimCi]:
        """The CI a MIG device or CI handle names (both carry the CI's serial); NOT_FOUND once it is destroyed."""
        for gi in gpu.gis:
            for ci in gi.cis:
                if ci.serial == serial:
                    return gi, ci
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @staticmethod
    def _mig_on(gpu: SimGpu) -> None:
        if gpu.mig_current != 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    # -- controls for tests and benchmarks (no nvmlInit needed; never counted) ---------------------
    def fail(self, match: str, nth: int = 1, error: int = pynvml.NVML_ERROR_UNKNOWN, gpu: int | None = None) -> None:
        """Fail the nth matching call from now: create_gi|create_ci|destroy_gi|destroy_ci|create|destroy|nvml*."""
        check_match(match)
        with self.store.transaction() as state:
            state.fail_rules.append(FailRule(match, nth, int(error), gpu))
            self.store.mark_dirty()

    def clear_failures(self) -> None:
        """Drop every pending `fail` rule (in every process sharing the state file)."""
        with self.store.transaction() as state:
            state.fail_rules.clear()
            self.store.mark_dirty()

    def pending_failures(self) -> int:
        """How many `fail` rules have not fired yet (a test's check that its faults were reached)."""
        with self.store.transaction() as state:
            return len(state.fail_rules)

    def on_call(self, match: str, nth: int, action: Callable[[], None], gpu: int | None = None) -> None:
        """Run `action` just before the nth matching call (e.g. lose the GPU mid-plan). In-process only."""
        self.faults.add_hook(match, nth, action, gpu)

    def set_latency(self, seconds: float, names: Iterable[str] | None = None) -> None:
        """Sleep this long in every call, or in the named functions or kinds (`query`, `create`, `destroy`,
        `mutating` ...: e.g. 1 ms per query and 50 ms per create or destroy); the sleep holds no lock."""
        self.faults.set_latency(seconds, names)

    @property
    def calls(self) -> dict[str, int]:
        """Calls this process made, per function name."""
        return dict(self.faults.calls)

    def call_stats(self) -> CallStats:
        """Calls and time per function: of every process sharing the state file, else of this process."""
        if self.state_file is not None:
            return read_call_stats(self.state_file)
        return CallStats(dict(self.faults.calls), dict(self.faults.nanoseconds))

    def mutating_calls(self) -> int:
        return self.faults.mutating_calls()

    def reset_counts(self) -> None:
        self.faults.reset_counts()

    def _edit_gpu(self, index: int, **changes: Any) -> None:
        with self.store.transaction() as state:
            gpu = state.gpus[index]
            for key, value in changes.items():
                setattr(gpu, key, value)
            self.store.mark_dirty()

    def lose_gpu(self, index: int, lost: bool = True) -> None:
        """Every call touching this GPU (or its GIs, CIs, MIG devices) now raises GPU_IS_LOST."""
        self._edit_gpu(index, lost=lost)

    def deny_process_queries(self, index: int, deny: bool = True) -> None:
        """Process queries on this GPU's handles raise NO_PERMISSION (an unprivileged container)."""
        self._edit_gpu(index, deny_processes=deny)

    def set_mig_mode(self, index: int, current: int, pending: int | None = None) -> None:
        """Force a MIG mode for a test (the agent changes it only through nvmlDeviceSetMigMode)."""
        self._edit_gpu(index, mig_current=current, mig_pending=current if pending is None else pending)

    def set_gpu_processes(self, index: int, pids: Iterable[int], used_mib: int = 512) -> None:
        """Processes on the physical GPU outside any MIG device (a non-MIG GPU at work, or a monitor)."""
        self._edit_gpu(index, gpu_processes=[[int(p), used_mib] for p in pids])

    def set_minor(self, index: int, minor: int) -> None:
        """The GPU's /dev/nvidia<minor> number (defaults to its index)."""
        self._edit_gpu(index, minor=minor)

    def set_mig_index_holes(self, index: int, holes: Iterable[int]) -> None:
        """MIG device indexes that answer NOT_FOUND (the devices after them shift up)."""
        self._edit_gpu(index, mig_index_holes=sorted(set(holes)))

    def set_processes(self, mig_uuid: str, pids: Iterable[int], used_mib: int = 512) -> None:
        """Put processes on a MIG device (busy), or none (idle)."""
        with self.store.transaction() as state:
            ci = self._find_ci(state, mig_uuid)
            ci.processes = [[int(p), used_mib] for p in pids]
            self.store.mark_dirty()

    def make_busy(self, mig_uuid: str, pids: Iterable[int] = (4242,)) -> None:
        self.set_processes(mig_uuid, pids)

    def make_idle(self, mig_uuid: str) -> None:
        self.set_processes(mig_uuid, ())

    @staticmethod
    def _find_ci(state: SimState, mig_uuid: str) -> SimCi:
        for gpu in state.gpus:
            for gi in gpu.gis:
                for ci in gi.cis:
                    if ci.uuid == mig_uuid:
                        return ci
        raise KeyError(f"no MIG device {mig_uuid} on the simulated node")

    def add_instance(self, index: int, profile: str, start: int, pids: Iterable[int] = (), *,
                     compute: bool = True) -> str:
        """Set up a pre-existing GI + full CI directly (bypasses faults and counts); returns its MIG UUID.
        `compute=False`: the GI alone, as an interrupted create or destroy leaves it (returns "")."""
        with self.store.transaction() as state:
            gpu = state.gpus[index]
            prof = driver.model_of(gpu.model).profile(profile)
            gi = driver.create_gi(state, gpu, prof, start, prof.memory_slices)
            if not compute:
                self.store.mark_dirty()
                return ""
            enum = next(e for e, s in driver.ci_profiles(prof).items() if s == prof.compute_slices)
            ci = driver.create_ci(state, gi, prof, enum)
            ci.processes = [[int(p), 512] for p in pids]
            self.store.mark_dirty()
            return ci.uuid

    def snapshot(self) -> dict[str, Any]:
        """The full device state as plain data (for before/after comparisons); fault rules excluded."""
        with self.store.transaction() as state:
            raw = state.to_json()
        return {"gpus": raw["gpus"]}
