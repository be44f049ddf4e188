"""`hami-mig apply`: carry out a `hami-mig plan --json` decision on the GPUs, with rollback on failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_NOT_DONE, EXIT_OK, CliError, print_json, read_json_file
from hami_mig.cli.devices import add_backend_args, open_backend
from hami_mig.errors import InputError
from hami_mig.mig.plan import Operation
from hami_mig.nvml import ApplyError, HardwareError, predict

_FIELDS = ("op", "gpu_index", "profile", "start")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("apply", help="apply a plan's MIG operations (create/destroy) to the GPUs",
                       description="Apply the operations of `hami-mig plan --json` output. Exit 0 applied, "
                                   "1 NVML unavailable, 2 bad input, 3 could not apply (rolled back).")
    p.add_argument("--plan", required=True, metavar="PLAN.json", help="output of `hami-mig plan --json`")
    add_backend_args(p)
    p.add_argument("--dry-run", action="store_true", help="check against the current devices; change nothing")
    p.set_defaults(func=run)


def _whole(raw: Mapping[str, Any], key: str, field: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{field}.{key}", value, "a whole number >= 0")
    return value


def parse_plan(doc: Any) -> tuple[Operation, ...]:
    """A Decision's JSON -> Operations; InputError names the first bad field and value."""
    if not isinstance(doc, Mapping):
        raise InputError("plan", type(doc).__name__, 'an object {"fits": true, "operations": [...]}')
    fits = doc.get("fits")
    if fits is not True:
        reason = f" ({doc['reason']})" if fits is False and doc.get("reason") else ""
        raise InputError("plan.fits", fits, f"only a plan with fits=true can be applied{reason}")
    raw_ops = doc.get("operations", [])
    if not isinstance(raw_ops, list):
        raise InputError("plan.operations", raw_ops, "a list of {op, gpu_index, profile, start}")
    ops: list[Operation] = []
    for n, raw in enumerate(raw_ops):
        field = f"operations[{n}]"
        if not isinstance(raw, Mapping):
            raise InputError(field, raw, "an object {op, gpu_index, profile, start}")
        missing = [k for k in _FIELDS if k not in raw]
        if missing:
            raise InputError(f"{field}.{missing[0]}", None, "required")
        op = raw["op"]
        if op not in ("create", "destroy"):
            raise InputError(f"{field}.op", op, "expected create or destroy")
        profile = raw["profile"]
        if not isinstance(profile, str) or not profile:
            raise InputError(f"{field}.profile", profile, "a MIG profile name such as '1g.10gb'")
        gpu_uuid = raw.get("gpu_uuid", "")
        if not isinstance(gpu_uuid, str):
            raise InputError(f"{field}.gpu_uuid", gpu_uuid, "a GPU UUID string")
        ops.append(Operation(op, _whole(raw, "gpu_index", field), profile, _whole(raw, "start", field), gpu_uuid))
    return tuple(ops)


def run(args: argparse.Namespace) -> int:
    try:
        ops = parse_plan(read_json_file(args.plan, "--plan"))
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    backend = open_backend(args)
    try:
        if args.dry_run:
            steps = predict(backend.devices(), ops)
            failing = [s for s in steps if s.outcome == "fail"]
            print_json({"dry_run": True, "ok": not failing, "operations": [s.to_json() for s in steps]})
            if failing:
                first = failing[0]
                print(f"hami-mig apply: would fail: {first.op.op} {first.op.profile}@{first.op.start} on GPU "
                      f"{first.op.gpu_index}: {first.reason}", file=sys.stderr)
                return EXIT_NOT_DONE
            return EXIT_OK
        result = backend.apply(ops)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    except (ApplyError, HardwareError) as exc:
        raise CliError(str(exc), EXIT_NOT_DONE) from None
    finally:
        backend.shutdown()
    print_json(result.to_json())
    return EXIT_OK
