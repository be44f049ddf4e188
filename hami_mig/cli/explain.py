"""`hami-mig explain`: the planner's reasoning for one request, offline, GPU by GPU and geometry by geometry."""

from __future__ import annotations

import argparse

from hami_mig.cli.common import EXIT_NOT_DONE, EXIT_OK, print_json
from hami_mig.cli.plan import add_planning_args, planning_inputs
from hami_mig.mig.explain import explain


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="explain, offline, which MIG instance a request would get and why",
                       description="Per GPU: the geometries (or, with --geometries any, the profiles) considered "
                       "and why each was skipped or accepted, then the chosen slot and placement, or why nothing "
                       "fits. The same reasoning the agent puts in its Allocate Events.")
    add_planning_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    gpus, request, lookup = planning_inputs(args)
    result = explain(gpus, request, lookup, policy=args.policy, mode=args.geometries)
    if args.json:
        print_json(result.to_json())
    else:
        print("\n".join(result.lines()))
    return EXIT_OK if result.decision.fits else EXIT_NOT_DONE
