"""`hami-mig demo`: the product working end to end on a laptop with no GPU and no cluster."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CliError, cannot_listen, check_port_free, port
from hami_mig.errors import InputError
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES

if TYPE_CHECKING:  # the demo's fakes are loaded when it runs: the agent process (same CLI) never needs them
    from hami_mig.demo.scenario import Scenario
    from hami_mig.metrics import AgentStats
    from hami_mig.testing.cluster import SimCluster

METRICS_HOST = "127.0.0.1"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a simulated node with the real agent and a scripted scenario",
                       description="Simulated GPUs, a fake kubelet and a fake API server around the real agent. "
                       "Without --policy/--geometries the scenario runs twice, under the agent's default "
                       "(--policy hami --geometries config) and under --policy best-fit --geometries any, "
                       "and a table compares the two.")
    p.add_argument("--sim-gpus", metavar="SPEC", help="simulated GPUs (default: the scenario's, 2x A100-SXM4-80GB)")
    p.add_argument("--scenario", metavar="FILE", help="a YAML scenario of your own (see docs/demo.md)")
    p.add_argument("--policy", choices=POLICIES, default=None,
                   help="run once with this planner policy (default: both runs; the agent's default is hami)")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default=None,
                   help="run once with this geometries mode (default: both runs; the agent's default is config)")
    p.add_argument("--serve", action="store_true",
                   help="after the scenario keep the (last run's) node running with /metrics on --metrics-port")
    p.add_argument("--metrics-port", type=port, default=31993, metavar="PORT",
                   help=f"port of /metrics, /healthz and /readyz with --serve, on {METRICS_HOST} (default: "
                        "%(default)s, the agent's)")
    p.add_argument("--plain", action="store_true", help="accepted for older scripts; the output is always plain text")
    p.set_defaults(func=run)


def load_scenario(path: str | None) -> Scenario:
    """The scenario file (one line naming the problem, exit 2) or the embedded one."""
    from hami_mig.demo.scenario import default_scenario, parse_scenario

    if not path:
        return default_scenario()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--scenario {path!r}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_scenario(text, path)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


def run(args: argparse.Namespace) -> int:
    from hami_mig.agent.config import AgentConfig
    from hami_mig.demo.compare import run_settings, settings_for
    from hami_mig.demo.runner import plain_say
    from hami_mig.metrics import AgentStats
    from hami_mig.testing.nvmlsim import NvmlSim

    # Every input is checked before the first pod: a bad flag or a taken port never waits for the scenario.
    scenario = load_scenario(args.scenario)
    try:
        NvmlSim(args.sim_gpus or scenario.sim_gpus)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    if args.serve:
        check_port_free(METRICS_HOST, args.metrics_port, "--metrics-port")
    if args.log_level == "warning":  # refusals are part of the story; the agent's warnings would repeat them
        logging.getLogger("hami_mig").setLevel(logging.ERROR)
    base = AgentConfig(node_name="demo-node", reconcile_interval_s=3600, events=True)
    stats = AgentStats()
    hold = _serve(args, stats) if args.serve else None
    try:
        run_settings(scenario, base, settings_for(args.policy, args.geometries), plain_say,
                     sim_gpus=args.sim_gpus, hold=hold, stats=stats)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    return EXIT_OK


def _serve(args: argparse.Namespace, stats: AgentStats) -> Callable[[SimCluster], None]:
    from hami_mig.cli.device_plugin import start_metrics

    def hold(cluster: SimCluster) -> None:
        assert cluster.agent is not None
        try:
            server = start_metrics(cluster.agent, stats, METRICS_HOST, args.metrics_port)
        except OSError as exc:  # taken since the check at start: still the environment, exit 1
            raise CliError(cannot_listen("--metrics-port", METRICS_HOST, args.metrics_port, exc),
                           EXIT_FAILURE) from None
        print(f"serving metrics on {server.url}/metrics (also /healthz, /readyz); Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return hold
