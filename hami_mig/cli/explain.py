"""`hami-mig explain`: the planner's reasoning for one request, offline, GPU by GPU and geometry by geometry."""

from __future__ import annotations

import argparse

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_NOT_DONE, EXIT_OK, CliError, print_json, read_json_file
from hami_mig.cli.plan import load_device_config
from hami_mig.errors import InputError
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.explain import explain
from hami_mig.mig.geometry import resolve_for_gpu
from hami_mig.mig.node_file import parse_node
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES
from hami_mig.mig.request import Request


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="explain, offline, which MIG instance a request would get and why",
                       description="Per GPU: the geometries (or, with --geometries any, the profiles) considered "
                       "and why each was skipped or accepted, then the chosen slot and placement, or why nothing "
                       "fits. The same reasoning the agent puts in its Allocate Events.")
    p.add_argument("--node", required=True, metavar="NODE.json", help="GPUs with model and instances")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--memory", type=int, metavar="MIB", help="memory per instance in MiB (nvidia.com/gpumem)")
    size.add_argument("--memory-percentage", type=int, metavar="P",
                      help="percent of the GPU's memory (nvidia.com/gpumem-percentage)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="instances on N distinct GPUs (nvidia.com/gpu)")
    p.add_argument("--cores", type=int, metavar="P", help="minimum percent of SMs (nvidia.com/gpucores)")
    p.add_argument("--device-config", metavar="FILE", help="HAMi device-config.yaml (default: HAMi's built-in table)")
    p.add_argument("--policy", choices=POLICIES, default="hami", help="hami (first fit, default) or best-fit")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default="config",
                   help="config: only knownMigGeometries (default); any: every layout the hardware allows")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    catalogue = default_catalogue()
    try:
        config = load_device_config(args.device_config)
        gpus = parse_node(read_json_file(args.node, "--node"), catalogue)
        request = Request(count=args.count, memory_mib=args.memory, memory_percent=args.memory_percentage,
                          cores=args.cores)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    result = explain(gpus, request, lambda g: resolve_for_gpu(config, g.model, catalogue),
                     policy=args.policy, mode=args.geometries)
    if args.json:
        print_json(result.to_json())
    else:
        print("\n".join(result.lines()))
    return EXIT_OK if result.decision.fits else EXIT_NOT_DONE
