"""`hami-mig device-plugin`: the node agent (the DaemonSet's process)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.core import Agent
from hami_mig.agent.heap import one_arena, trim_heap
from hami_mig.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CliError, cannot_listen, port
from hami_mig.cli.devices import add_backend_args, open_backend
from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODES
from hami_mig.kube.client import KubeClient, KubeConfigError
from hami_mig.kube.nodeconfig import node_config_for
from hami_mig.kube.register import REGISTER_FORMATS
from hami_mig.kube.resources import ResourceNames
from hami_mig.metrics import AgentStats, MetricsServer, build_registry
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.mig.geometry import DeviceConfig, default_device_config, parse_device_config, validate_device_config
from hami_mig.mig.planner import GEOMETRY_MODES, POLICIES
from hami_mig.plugin import DEFAULT_KUBELET_DIR

log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.0005


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("device-plugin", help="run the node agent (kubelet device plugin for nvidia.com/gpu)",
                       description="Serve nvidia.com/gpu to the kubelet and carve MIG instances on demand.")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                   help="this node's name (default: $NODE_NAME, set from the downward API)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    p.add_argument("--device-config", metavar="FILE", help="HAMi device-config.yaml (default: HAMi's built-in table)")
    p.add_argument("--node-config", metavar="FILE",
                   help="HAMi device plugin config.json (operatingmode, filterdevices)")
    p.add_argument("--default-mode", choices=MODES, default="mig",
                   help="operating mode of a node that config.json does not list (default: mig)")
    p.add_argument("--kubelet-dir", default=str(DEFAULT_KUBELET_DIR), metavar="DIR",
                   help="kubelet device-plugins directory (default: %(default)s)")
    add_backend_args(p)
    p.add_argument("--policy", choices=POLICIES, default="hami", help="planner policy (default: hami)")
    p.add_argument("--geometries", choices=GEOMETRY_MODES, default="config",
                   help="config: only knownMigGeometries (default); any: every layout the hardware allows")
    p.add_argument("--metrics-port", type=port, default=31993, metavar="PORT",
                   help="port of /metrics, /healthz, /readyz (default: %(default)s; 0: off)")
    p.add_argument("--metrics-host", default="0.0.0.0", metavar="ADDRESS",
                   help="address the metrics endpoint binds (default: %(default)s, every interface)")
    p.add_argument("--cdi", action="store_true",
                   help="answer Allocate with CDI device names (nvidia.com/gpu=MIG-<uuid>) and write a CDI spec "
                   "per instance into --cdi-dir before answering")
    p.add_argument("--cdi-dir", default="/var/run/cdi", metavar="DIR",
                   help="host CDI spec directory the agent writes hami-mig_<MIG-uuid>.json into (default: %(default)s)")
    p.add_argument("--cdi-base-spec", default="", metavar="FILE",
                   help="a CDI spec made by `nvidia-ctk cdi generate`; its top-level containerEdits (driver library "
                   "mounts, hooks) are copied into every per-instance spec (default: none, device nodes only)")
    p.add_argument("--mig-minors", default="/proc/driver/nvidia-caps/mig-minors", metavar="FILE",
                   help="the driver's MIG capability minors table, for the CDI specs' /dev/nvidia-caps nodes "
                   "(default: %(default)s)")
    p.add_argument("--proc-root", default="/proc", metavar="DIR",
                   help="procfs to read process names, open GPU files and /proc/devices from (default: %(default)s)")
    p.add_argument("--manage-mig-mode", action="store_true",
                   help="enable MIG on idle GPUs whose node-config mode is mig, and disable it on idle GPUs that "
                   "config.json's gpus list sets to another mode; never resets a GPU (Ampere: change stays pending)")
    p.add_argument("--ignore-gpu-operator", action="store_true",
                   help="manage MIG even on nodes the GPU Operator's MIG manager labels (nvidia.com/mig.config ...)")
    p.add_argument("--reconcile-interval", type=float, default=30.0, metavar="SECONDS",
                   help="how often the agent re-reads the node's pods, finishes interrupted work (the allocate "
                        "journal, GPU instances without compute instance) and republishes the node (default: "
                        "%(default)s; every 5 s while such work is left; GPUs are re-read every "
                        "--nvml-resync-interval)")
    p.add_argument("--nvml-resync-interval", type=float, default=30.0, metavar="SECONDS",
                   help="re-read every GPU in full this often, to notice what others changed (another tool, a GPU "
                   "reset); in between the agent keeps its own picture current and checks only the GPUs an "
                   "Allocate touches (default: %(default)s; 0: never)")
    p.add_argument("--state-dir", default="/var/lib/hami-mig",
                   help="where the allocate journal lives, so a crash mid-Allocate leaves no orphan instance "
                        "(default /var/lib/hami-mig; a hostPath in the chart)")
    p.add_argument("--idle-release-seconds", type=float, default=0.0, metavar="SECONDS",
                   help="destroy free instances unused this long (default 0: keep them for reuse until a reshape "
                        "needs the room)")
    p.add_argument("--allocate-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="longest one kubelet Allocate may take (finding the pod, reshaping, recording) before it "
                        "fails and the kubelet retries the pod (default: %(default)s)")
    p.add_argument("--no-events", action="store_true", help="do not post Kubernetes Events on pods")
    p.add_argument("--no-legacy-metrics", action="store_true",
                   help="do not emit HAMi's camelCase series (nodeGPUMigInstance, GPUDeviceMemoryLimit, ...)")
    p.add_argument("--no-v29-metrics", action="store_true",
                   help="do not emit HAMi v2.9's names (hami_node_gpu_mig_instance_info, hami_gpu_*, hami_vgpu_*)")
    p.add_argument("--hami-register-format", choices=REGISTER_FORMATS, default="json",
                   help="format of the hami.io/node-nvidia-register annotation: json for HAMi v2.8 and later "
                   "(default), legacy for the comma-separated format v2.5 to v2.7 schedulers read")
    p.set_defaults(func=run)


def _read(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{flag} {path!r}: cannot read: {exc.strerror or exc}") from None


def load_device_config(path: str | None) -> DeviceConfig:
    """The agent keeps valid geometries and skips invalid ones with a warning (never a crash loop)."""
    if path is None:
        return default_device_config()
    config = parse_device_config(_read(path, "--device-config"), path)
    for unknown in config.unknown_keys:  # HAMi drops them silently; we say so once, and go on
        log.warning("device-config %s: %s", path, unknown.message)
    for finding in validate_device_config(config, default_catalogue()):
        level = {"error": logging.WARNING, "warning": logging.INFO, "info": logging.DEBUG}[finding.level]
        suffix = "; this geometry is skipped" if finding.level == "error" else ""
        log.log(level, "device-config: %s%s", finding.message, suffix)
    return config


def build_config(args: argparse.Namespace) -> AgentConfig:
    if not args.node_name:
        raise CliError("--node-name: not given and $NODE_NAME is empty; set it from the downward API")
    if not args.nvml_resync_interval >= 0:
        raise CliError(f"--nvml-resync-interval: {args.nvml_resync_interval:g} is not allowed; give 0 (never) or "
                       "a number of seconds", EXIT_BAD_INPUT)
    try:
        device_config = load_device_config(args.device_config)
        text = _read(args.node_config, "--node-config") if args.node_config else ""
        node = node_config_for(text, args.node_name, device_config.device_split_count)
        mode = node.operating_mode if args.node_config and _listed(text, args.node_name) else args.default_mode
        names = ResourceNames.of(device_config)
    except InputError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    return AgentConfig(
        node_name=args.node_name, device_config=device_config, mode=mode, split_count=node.device_split_count,
        filter_uuids=node.filter_uuids, filter_indices=node.filter_indices, policy=args.policy,
        geometries=args.geometries, names=names, cdi=args.cdi, allocate_timeout_s=args.allocate_timeout,
        reconcile_interval_s=args.reconcile_interval, nvml_resync_interval_s=args.nvml_resync_interval,
        events=not args.no_events, state_dir=args.state_dir,
        idle_release_s=args.idle_release_seconds,
        gpu_modes=node.gpu_modes if args.node_config and _listed(text, args.node_name) else (),
        cdi_dir=args.cdi_dir, cdi_base_spec=args.cdi_base_spec, mig_minors_path=args.mig_minors,
        proc_root=args.proc_root,
        manage_mig_mode=args.manage_mig_mode, ignore_gpu_operator=args.ignore_gpu_operator,
        register_format=args.hami_register_format,
    )


def _listed(text: str, node: str) -> bool:
    from hami_mig.kube.nodeconfig import parse_node_configs

    return any(entry.name == node for entry in parse_node_configs(text))


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    one_arena()  # before any thread starts: one C heap, not one per thread (benchmarks/agent.py, memory)
    # A thread waiting for the GIL (a scrape, the kubelet's next call) gets it within 0.5 ms, not Python's
    # default 5 ms: a scrape during an Allocate burst waits for a few switches, not for the whole burst.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        kube = KubeClient.from_environment(args.kubeconfig, node_name=config.node_name)
    except KubeConfigError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    backend = open_backend(args)
    stats = AgentStats()
    agent = Agent(config, backend, kube, kubelet_dir=args.kubelet_dir, stats=stats)
    metrics = None
    if args.metrics_port:
        try:
            metrics = start_metrics(agent, stats, args.metrics_host, args.metrics_port,
                                    legacy=not args.no_legacy_metrics, v29=not args.no_v29_metrics)
        except OSError as exc:
            backend.shutdown()
            raise CliError(cannot_listen("--metrics-port", args.metrics_host, args.metrics_port, exc),
                           EXIT_FAILURE) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        agent.start()
        warn_unknown_keys(agent, config)
        settle_heap()
        log.info("hami-mig agent serving nvidia.com/gpu on node %s (%s policy, %s geometries)",
                 config.node_name, config.policy, config.geometries)
        stop.wait()
    finally:
        agent.stop()
        if metrics is not None:
            metrics.stop()
        backend.shutdown()
    return EXIT_OK


def warn_unknown_keys(agent: Agent, config: AgentConfig) -> None:
    """One Warning Event on the Node for the device-config's unknown keys (`kubectl describe node` shows it)."""
    unknown = config.device_config.unknown_keys
    if unknown:
        agent.events.node(config.node_name, "DeviceConfigUnknownKeys",
                          "device-config: " + "; ".join(u.message for u in unknown), "Warning")


def settle_heap() -> None:
    """Move everything alive after start-up (the kubernetes client's hundreds of model classes, gRPC, the
    catalogue) out of the cyclic GC's reach: they live as long as the process, and without this every full
    collection walks them again, a 50 ms stall inside whichever Allocate triggers it (benchmarks/agent.py)."""
    gc.collect()
    gc.freeze()
    trim_heap(force=True)  # and hand start-up's freed C heap back to the system


def start_metrics(agent: Agent, stats: AgentStats | None, host: str, port: int, *, legacy: bool = True,
                  v29: bool = True) -> MetricsServer:
    """Serve /metrics, /healthz and /readyz for the agent (the agent's own snapshot and counters)."""
    registry = build_registry(agent.current_snapshot, stats, legacy=legacy, v29=v29)  # a scrape never waits
    agent.snapshot_listeners.append(registry.snapshot.warm)  # rendered once per snapshot, before scrapes ask
    return MetricsServer(registry, port=port, host=host, ready_fn=agent.ready).start()
