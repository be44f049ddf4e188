"""`hami-mig doctor`: check a GPU node before the agent runs there; reads only, never changes a GPU."""

from __future__ import annotations

import argparse
import os
import socket

from hami_mig.cli.common import CliError, print_json
from hami_mig.cli.devices import add_backend_args, nvml_module
from hami_mig.doctor import DoctorOptions, run_doctor
from hami_mig.doctor.report import EXIT_INPUT


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="read-only preflight of this GPU node: NVML, MIG mode, profile tables, instances, "
                       "kubelet, CDI, GPU Operator, ConfigMaps",
        description="One line per check (ok / warn / fail) with the fix for each problem. Only reads: NVML is "
                    "reached through a guard that refuses any call that could change a GPU, and the API server "
                    "only gets GETs. Exit 0 when nothing fails (warnings allowed), 1 when the node, driver, GPUs "
                    "or cluster fail a check, 2 for bad options or a ConfigMap file that does not parse.")
    add_backend_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--kubelet-dir", metavar="DIR",
                   help="kubelet device-plugins directory (default /var/lib/kubelet/device-plugins; with --backend "
                        "sim only checked when given)")
    p.add_argument("--cdi-dir", metavar="DIR",
                   help="CDI spec directory, and the NVIDIA Container Toolkit (default /var/run/cdi; with --backend "
                        "sim only checked when given)")
    p.add_argument("--device-config", metavar="FILE", help="HAMi device-config.yaml to parse and match GPUs against "
                                                           "(default: HAMi's built-in knownMigGeometries)")
    p.add_argument("--node-config", metavar="FILE", help="HAMi device plugin config.json (needs --node-name)")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME"), metavar="NODE",
                   help="this node's Kubernetes name (default: $NODE_NAME, else the host name)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="read the node's labels and pods with this kubeconfig (default: in a pod its service account, "
                        "else $KUBECONFIG or ~/.kube/config when present; never required)")
    p.add_argument("--proc-root", metavar="DIR",
                   help="procfs to name GPU processes from (default /proc; with --backend sim the GPU clients "
                        "check runs only when given)")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> DoctorOptions:
    if args.node_config and not args.node_name:
        raise CliError("--node-config: needs --node-name NODE (or $NODE_NAME) to find this node's entry", EXIT_INPUT)
    return DoctorOptions(
        node_name=args.node_name or socket.gethostname().lower(), simulated=args.backend == "sim",
        kubelet_dir=args.kubelet_dir, cdi_dir=args.cdi_dir, device_config=args.device_config,
        node_config=args.node_config, kubeconfig=args.kubeconfig, proc_root=args.proc_root)


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    report = run_doctor(nvml_module(args), opts)
    if args.json:
        print_json(report.to_json(args.strict))
    else:
        print(report.render())
    return report.exit_code(args.strict)
