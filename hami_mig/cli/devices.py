"""`hami-mig devices`: what is on this node's GPUs, read-only (safe on any production node)."""

from __future__ import annotations

import argparse
from typing import Any

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CliError, print_json
from hami_mig.errors import InputError
from hami_mig.nvml import GpuDevice, NvmlBackend, NvmlUnavailableError

DEFAULT_SIM_SPEC = "A100-SXM4-80GB:2"


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """--backend nvml|sim and the simulator's options, shared by `devices` and `apply`."""
    p.add_argument("--backend", choices=("nvml", "sim"), default="nvml",
                   help="nvml: the real driver (default); sim: the built-in NVML simulator")
    p.add_argument("--sim-gpus", metavar="SPEC",
                   help=f"simulated GPUs, e.g. 'A100-SXM4-80GB:2,H100-SXM5-80GB:1' (default {DEFAULT_SIM_SPEC}); "
                        "append ':mig-off' or ':mig-pending' to a group to simulate MIG mode not enabled")
    p.add_argument("--sim-state", metavar="FILE",
                   help="JSON file holding the simulated GPUs so several commands see the same state "
                        "(default: $HAMI_MIG_SIM_STATE, else in this process only)")


def nvml_module(args: argparse.Namespace) -> Any:
    """pynvml, or the simulator for --backend sim; CliError: 1 when pynvml is missing, 2 for bad options."""
    if args.backend != "sim":
        for opt in ("sim_gpus", "sim_state"):
            if getattr(args, opt, None) is not None:
                raise CliError(f"--{opt.replace('_', '-')} only applies with --backend sim", EXIT_BAD_INPUT)
        try:
            import pynvml
        except ImportError as exc:
            raise CliError(f"cannot load pynvml (nvidia-ml-py): {exc}", EXIT_FAILURE) from None
        return pynvml
    from hami_mig.testing.nvmlsim import from_env  # only the sim path loads test doubles

    try:
        return from_env(args.sim_gpus, args.sim_state)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"--sim-state: unreadable simulator state: {exc}", EXIT_BAD_INPUT) from None


def open_backend(args: argparse.Namespace) -> NvmlBackend:
    """An initialised backend, or CliError: 1 when NVML is unavailable, 2 for bad options."""
    backend = NvmlBackend(nvml_module(args))
    try:
        backend.init()
    except NvmlUnavailableError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    return backend


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("devices", help="list GPUs, their MIG profiles and instances (read-only)",
                       description="Show each GPU's MIG mode, NVML's profile table and the instances on it. "
                                   "Only reads; never changes a GPU.")
    add_backend_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    backend = open_backend(args)
    try:
        devices = backend.devices()
    finally:
        backend.shutdown()
    if args.json:
        print_json({"gpus": [d.to_json() for d in devices]})
    else:
        print(render(devices))
    return EXIT_OK


def render(devices: tuple[GpuDevice, ...]) -> str:
    if not devices:
        return "no GPUs found"
    lines: list[str] = []
    for d in devices:
        numa = "-" if d.numa_node is None else str(d.numa_node)
        lines.append(f"GPU {d.index}  {d.name or '?'}  {d.uuid or '?'}  {d.memory_mib} MiB  "
                     f"MIG {d.mig_mode}  NUMA {numa}")
        if d.message:
            lines.append(f"  note: {d.message}")
        if d.model is not None:
            lines.append("  profiles: " + ", ".join(
                f"{p.name} x{p.max_count} ({p.memory_mib} MiB)" for p in d.model.profiles))
        if d.mig_enabled:
            if not d.instances:
                lines.append("  instances: none")
                continue
            lines.append(f"  {'PROFILE':<12}{'START':>5}{'GI':>4}{'CI':>4}  {'MIG UUID':<42}{'MiB':>7}  PROCESSES")
            for hw in d.instances:
                for row in hw.rows_json():
                    procs = row["processes"]
                    shown = procs if isinstance(procs, str) else (",".join(map(str, procs)) or "-")
                    ci = "-" if row["ci_id"] is None else str(row["ci_id"])
                    lines.append(f"  {row['profile']:<12}{row['start']:>5}{row['gi_id']:>4}{ci:>4}  "
                                 f"{row['mig_uuid'] or '(no compute instance)':<42}{row['memory_mib']:>7}  {shown}")
    return "\n".join(lines)
