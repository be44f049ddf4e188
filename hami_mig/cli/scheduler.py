"""`hami-mig scheduler`: the kube-scheduler extender and mutating webhook (the scheduler Deployment's sidecar)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import ssl
import threading
from datetime import timedelta
from types import FrameType

from hami_mig.cli.common import EXIT_FAILURE, EXIT_OK, CliError, cannot_listen, port
from hami_mig.cli.device_plugin import load_device_config
from hami_mig.errors import InputError
from hami_mig.kube.client import KubeClient, KubeConfigError
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES
from hami_mig.scheduler.api import SchedulerApi
from hami_mig.scheduler.bind import Binder
from hami_mig.scheduler.config import DEFAULT_SCHEDULER_NAME, SCORE_MODES, SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.lock import NodeLocker
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import ApiSource

log = logging.getLogger(__name__)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "scheduler", help="run the kube-scheduler extender (filter, prioritize, bind) and the mutating webhook",
        description="Serve POST /filter, /prioritize, /bind (kube-scheduler extender v1), /webhook "
                    "(AdmissionReview v1) and GET /healthz. Plans MIG instances with the node agent's planner "
                    "from the GPUs nodes publish; see docs/scheduler.md.")
    p.add_argument("--port", type=port, required=True, help="port to listen on")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    p.add_argument("--cert", metavar="FILE", help="TLS certificate (PEM): serve HTTPS (the webhook needs it)")
    p.add_argument("--key", metavar="FILE", help="TLS private key (PEM) for --cert")
    p.add_argument("--device-config", metavar="FILE",
                   help="HAMi device-config.yaml, the same the node agents use (default: HAMi's built-in table)")
    p.add_argument("--policy", choices=POLICIES, default="hami", help="planner policy; match the agents' (hami)")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default="config",
                   help="config: knownMigGeometries slots (default); any: every layout; match the agents'")
    p.add_argument("--score", choices=SCORE_MODES, default="binpack",
                   help="binpack: prefer nodes whose GPUs are in use (default); spread: the emptiest")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help=f"schedulerName the webhook sets on GPU pods (default: {DEFAULT_SCHEDULER_NAME})")
    p.add_argument("--lock-timeout", type=_positive, default=300.0, metavar="SECONDS",
                   help="a node lock older than this is stale and taken over (default: 300, HAMi's)")
    p.add_argument("--lock-wait", type=_positive, default=5.0, metavar="SECONDS",
                   help="how long a bind waits for another pod's allocation on the node (default: 5)")
    p.add_argument("--cache-ttl", type=_positive, default=1.0, metavar="SECONDS",
                   help="how old the filter's view of nodes and pods may be (default: 1)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> SchedulerConfig:
    try:
        device_config = load_device_config(args.device_config)
    except InputError as exc:
        raise CliError(f"--device-config: {exc}") from None
    return SchedulerConfig(device_config=device_config, policy=args.policy, geometries=args.geometries,
                           score=args.score, scheduler_name=args.scheduler_name,
                           lock_timeout=timedelta(seconds=args.lock_timeout), lock_wait_s=args.lock_wait,
                           cache_ttl_s=args.cache_ttl)


def run(args: argparse.Namespace) -> int:
    if (args.cert is None) != (args.key is None):
        raise CliError("--cert and --key go together")
    for flag, path in (("--cert", args.cert), ("--key", args.key)):  # bad input, before any connection
        if path is not None and not os.access(path, os.R_OK):
            why = "permission denied" if os.path.exists(path) else "no such file"
            raise CliError(f"{flag} {path!r}: cannot read: {why}")
    config = build_config(args)
    try:
        kube = KubeClient.from_environment(args.kubeconfig, component=config.scheduler_name)
    except KubeConfigError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    api = SchedulerApi(kube)
    planner = NodePlanner(config)
    source = ApiSource(api, config.cache_ttl_s, freeze_gc=True)
    gc.set_threshold(50_000, 50, 100)  # a filter allocates many short-lived objects: fewer young collections
    locker = NodeLocker(api, timeout=config.lock_timeout, wait_s=config.lock_wait_s)
    binder = Binder(api, planner, locker, on_bound=source.assume)
    extender = Extender(config, source, binder, planner)
    try:
        server = ExtenderServer(extender, host=args.host, port=args.port, cert=args.cert, key=args.key)
    except ssl.SSLError as exc:  # the files are there but are no PEM certificate and key that match
        raise CliError(f"--cert/--key: not a usable certificate and key: {exc.reason or exc}") from None
    except OSError as exc:
        raise CliError(cannot_listen("--port", args.host, args.port, exc), EXIT_FAILURE) from None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    log.info("hami-mig scheduler extender serving on %s (policy %s, geometries %s, score %s)",
                server.url, config.policy, config.geometries, config.score)
    try:
        stop.wait()
    finally:
        server.stop()
        kube.close()
    return EXIT_OK
