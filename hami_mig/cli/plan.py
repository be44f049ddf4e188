"""`hami-mig plan`: the planner's decision for one request on a node described in a JSON file."""

from __future__ import annotations

import argparse
from pathlib import Path

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_NOT_DONE, EXIT_OK, CliError, print_json, read_json_file
from hami_mig.errors import InputError
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.config_report import ConfigReport, check_device_config
from hami_mig.mig.geometry import DeviceConfig, default_device_config, resolve_for_gpu
from hami_mig.mig.node_file import parse_node
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES, GeometryLookup, decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState
from hami_mig.mig.yamldoc import YamlSyntaxError


def add_planning_args(p: argparse.ArgumentParser) -> None:
    """The node file, the request and the planner options that `plan` and `explain` share."""
    p.add_argument("--node", required=True, metavar="NODE.json",
                   help="GPUs with model and instances, or `hami-mig devices --json` output; - reads standard input")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--memory", type=int, metavar="MIB", help="memory per instance in MiB (nvidia.com/gpumem)")
    size.add_argument("--memory-percentage", type=int, metavar="P",
                      help="percent of the GPU's memory (nvidia.com/gpumem-percentage)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="instances on N distinct GPUs (nvidia.com/gpu)")
    p.add_argument("--cores", type=int, metavar="P", help="minimum percent of SMs (nvidia.com/gpucores)")
    p.add_argument("--device-config", metavar="FILE", help="HAMi device-config.yaml (default: HAMi's built-in table)")
    p.add_argument("--policy", choices=POLICIES, default="hami",
                   help="hami (default: HAMi's first fitting geometry and slot on each GPU) or best-fit "
                   "(the smallest covering instance that loses the least room)")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default="config",
                   help="config: only knownMigGeometries (default); any: every layout the hardware allows")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def planning_inputs(args: argparse.Namespace) -> tuple[list[GpuState], Request, GeometryLookup]:
    """The GPUs, the request and the geometry lookup from `add_planning_args` options; bad input exits 2."""
    catalogue = default_catalogue()
    try:
        request = Request(count=args.count, memory_mib=args.memory, memory_percent=args.memory_percentage,
                          cores=args.cores)
    except InputError as exc:  # name the flag the user typed, not the pod resource it stands for
        raise CliError(f"{_FLAGS.get(exc.field, exc.field)} {exc.value}: {exc.allowed}", EXIT_BAD_INPUT) from None
    config = load_device_config(args.device_config)
    try:
        gpus = parse_node(read_json_file(args.node, "--node"), catalogue)
    except InputError as exc:
        raise CliError(f"--node {args.node}: {exc}", EXIT_BAD_INPUT) from None
    return gpus, request, lambda g: resolve_for_gpu(config, g.model, catalogue)


_FLAGS = {"nvidia.com/gpu": "--count", "nvidia.com/gpumem": "--memory",
          "nvidia.com/gpumem-percentage": "--memory-percentage", "nvidia.com/gpucores": "--cores"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="plan a MIG allocation offline for a node described in JSON",
                       description="Decide which MIG instance a request gets and the NVML operations needed.")
    add_planning_args(p)
    p.set_defaults(func=run)


def load_device_config(path: str | None) -> DeviceConfig:
    """The device-config from a file (unknown keys and every geometry checked; errors exit 2) or HAMi's default."""
    if path is None:
        return default_device_config()
    report = device_config_report(path, "--device-config")
    if report.errors:
        raise CliError(f"--device-config {path!r}: {report.first_error()}")
    return report.config


def device_config_report(path: str, flag: str) -> ConfigReport:
    """Read and check a device-config file; unreadable or unparsable files are one line (exit 2)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{flag} {path!r}: cannot read: {exc.strerror or exc}") from None
    try:
        return check_device_config(text, path, default_catalogue())
    except YamlSyntaxError as exc:
        raise CliError(str(exc)) from None
    except InputError as exc:
        raise CliError(f"{flag} {path!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    gpus, request, lookup = planning_inputs(args)
    decision = decide(gpus, request, lookup, policy=args.policy, mode=args.geometries)
    if args.json:
        print_json(decision.to_json())
    else:
        print(render(decision, gpus, request))
    return EXIT_OK if decision.fits else EXIT_NOT_DONE


def render(decision: Decision, gpus: list[GpuState], request: Request) -> str:
    lines = [f"request: {request.describe()}"]
    if not decision.fits:
        lines.append(f"does not fit: {decision.reason}")
        return "\n".join(lines)
    lines.append(f"{'GPU':<4} {'geometry':<9} {'slot':<5} {'profile':<10} {'start':<6} {'MiB':>7}  action")
    for a in decision.allocations:
        geo = "-" if a.geometry_index is None else str(a.geometry_index)
        slot = "-" if a.slot is None else str(a.slot)
        action = "reuse free instance" if a.reuse else "create"
        lines.append(f"{a.gpu_index:<4} {geo:<9} {slot:<5} {a.profile:<10} {a.start:<6} {a.memory_mib:>7}  {action}")
    if decision.operations:
        lines.append("NVML operations:")
        for n, op in enumerate(decision.operations, 1):
            lines.append(f"  {n}. {op.op} {op.profile}@{op.start} on GPU {op.gpu_index}")
    else:
        lines.append("NVML operations: none")
    return "\n".join(lines)
