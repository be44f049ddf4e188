"""`hami-mig demo`: the product working end to end on a laptop with no GPU and no cluster."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from hami_mig.agent.config import AgentConfig
from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_OK, CliError
from hami_mig.cli.device_plugin import start_metrics
from hami_mig.demo.runner import console_say, run_scenario
from hami_mig.demo.scenario import default_scenario, parse_scenario
from hami_mig.errors import InputError
from hami_mig.metrics import AgentStats
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES
from hami_mig.testing.cluster import SimCluster


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a simulated node with the real agent and a scripted scenario",
                       description="Simulated GPUs, a fake kubelet and a fake API server around the real agent.")
    p.add_argument("--sim-gpus", metavar="SPEC", help="simulated GPUs (default: the scenario's, 2x A100-SXM4-80GB)")
    p.add_argument("--scenario", metavar="FILE", help="a YAML scenario of your own (see docs/demo.md)")
    p.add_argument("--policy", choices=POLICIES, default="best-fit",
                   help="planner policy (default best-fit; the agent's own default is hami)")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default="any",
                   help="geometries mode (default any; the agent's own default is config)")
    p.add_argument("--serve", action="store_true", help="keep running afterwards with metrics on --metrics-port")
    p.add_argument("--metrics-port", type=int, default=31993)
    p.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.scenario:
            try:
                text = Path(args.scenario).read_text(encoding="utf-8")
            except OSError as exc:
                raise CliError(f"--scenario {args.scenario!r}: cannot read: {exc.strerror or exc}") from None
            scenario = parse_scenario(text, args.scenario)
        else:
            scenario = default_scenario()
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    if args.log_level == "warning":  # refusals are part of the story; the agent's warnings would repeat them
        logging.getLogger("hami_mig").setLevel(logging.ERROR)
    config = AgentConfig(node_name="demo-node", policy=args.policy, geometries=args.geometries,
                         reconcile_interval_s=3600, events=True)
    say = console_say(True if args.plain else None)
    stats = AgentStats()
    hold = _serve(args, stats) if args.serve else None
    try:
        run_scenario(scenario, config, say, sim_gpus=args.sim_gpus, hold=hold, stats=stats)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    return EXIT_OK


def _serve(args: argparse.Namespace, stats: AgentStats) -> Callable[[SimCluster], None]:
    def hold(cluster: SimCluster) -> None:
        assert cluster.agent is not None
        try:
            server = start_metrics(cluster.agent, stats, "127.0.0.1", args.metrics_port)
        except OSError as exc:
            raise CliError(f"--metrics-port {args.metrics_port}: cannot listen: {exc.strerror or exc}") from None
        print(f"serving metrics on {server.url}/metrics (also /healthz, /readyz); Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return hold
