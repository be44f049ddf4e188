"""`hami-mig check-config`: a device-config.yaml checked before rollout (unknown keys, bad geometries)."""

from __future__ import annotations

import argparse

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_OK, print_json
from hami_mig.cli.plan import device_config_report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-config", help="check a HAMi device-config.yaml offline: unknown keys, invalid geometries",
        description="Read a device-config.yaml (the whole file or its nvidia: section) as the agent would and "
                    "list every problem: YAML syntax, keys HAMi does not read (with the nearest valid key), "
                    "geometries a GPU model cannot realize. Exit 0 usable, 2 not.")
    p.add_argument("file", metavar="FILE", help="the device-config.yaml (the ConfigMap's data key)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = device_config_report(args.file, "check-config")
    if args.json:
        print_json(report.to_json())
    else:
        lines = [f"error: {e}" for e in report.errors]
        lines += [f"warning: {w}" + (f" (and {more} more like it; --json lists them)" if more else "")
                  for w, more in report.warnings_by_rule()]
        lines += [f"note: {n}" for n in report.notes]
        for r, rule in enumerate(report.config.rules):
            lines.append(f"knownMigGeometries[{r}] {', '.join(rule.models)}: "
                         + "; ".join(f"[{g}] {geo.describe()}" for g, geo in enumerate(rule.geometries)))
        verdict = "not usable" if report.errors else "ok"
        counts = f"{len(report.errors)} errors, {len(report.warnings)} warnings"
        lines.append(f"{args.file}: {verdict} ({counts})")
        print("\n".join(lines))
    return EXIT_BAD_INPUT if report.errors else EXIT_OK
