"""The API server, when one is reachable: the node's GPU Operator labels and its pods' instance records (GETs only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hami_mig.agent.coexist import device_plugin_warning, mig_manager_reason, operator_labels
from hami_mig.agent.records import holdings, unreadable_records
from hami_mig.doctor.gpus import Holdings
from hami_mig.doctor.report import Check, fail, ok, warn
from hami_mig.kube.client import KubeClient, KubeConfigError, Timeouts
from hami_mig.kube.errors import ApiError, ApiForbidden, ApiNotFound

TIMEOUTS = Timeouts(connect_s=2.0, read_s=5.0)
ANNOTATION_PATH = r"{..metadata.annotations.hami-mig\.io/instances}"


@dataclass
class ClusterView:
    """What the cluster said; `holdings` None when the pod records could not be read."""

    checks: list[Check] = field(default_factory=list)
    holdings: Holdings | None = None
    records_hint: str = ""


def records_hint(node: str) -> str:
    return (f"rerun with --kubeconfig FILE to read them, or compare the MIG UUIDs of `hami-mig devices` with "
            f"`kubectl get pods -A --field-selector spec.nodeName={node} -o jsonpath='{ANNOTATION_PATH}'`")


def configured(kubeconfig: str | None) -> bool:
    """An explicit file, a pod's service account, $KUBECONFIG or ~/.kube/config: something to try."""
    return bool(kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")
                or (Path.home() / ".kube" / "config").is_file())


def read_cluster(kubeconfig: str | None, node: str, *, explicit: bool) -> ClusterView:
    """Never required: without API access each check says what was not looked at; a failure is a failure only
    when the API was asked for (`explicit`)."""
    view = ClusterView(records_hint=records_hint(node))
    bad = fail if explicit else warn
    if not explicit and not configured(kubeconfig):
        view.checks.append(warn("cluster.api", "Kubernetes API", "no kubeconfig or in-cluster service account: the "
                                "node's labels and its pods' instance records are not checked",
                                "rerun with --kubeconfig FILE --node-name NODE (or inside the agent's pod) to check "
                                "them"))
        return view
    try:
        kube = KubeClient.from_environment(kubeconfig, timeouts=TIMEOUTS, node_name=node)
    except KubeConfigError as exc:
        view.checks.append(bad("cluster.api", "Kubernetes API", str(exc), "pass a valid --kubeconfig FILE"))
        return view
    with kube:
        try:
            meta = kube.get_node(node).metadata
            labels = dict((meta.labels if meta is not None else None) or {})
            pods = kube.list_node_pods(node).pods
        except ApiNotFound:
            view.checks.append(bad("cluster.api", "Kubernetes API", f"node {node!r} does not exist in the cluster",
                                   "pass the node's Kubernetes name with --node-name (`kubectl get nodes`)"))
            return view
        except ApiForbidden as exc:
            view.checks.append(bad("cluster.api", "Kubernetes API", str(exc),
                                   "use a kubeconfig (or service account) that may get nodes and list pods"))
            return view
        except ApiError as exc:
            view.checks.append(bad("cluster.api", "Kubernetes API", str(exc),
                                   "check the API server address in the kubeconfig and that it is up"))
            return view
    view.checks.append(ok("cluster.api", "Kubernetes API", f"node {node}: {len(pods)} pod(s) read"))
    view.checks.extend(label_checks(node, labels))
    broken = unreadable_records(pods)
    if broken:
        view.checks.append(warn("cluster.records", f"node {node}", "pods carry an unreadable hami-mig.io/instances "
                                f"annotation: {', '.join(broken)}; the agent protects every instance until it is fixed",
                                "restore the annotation or delete those pods"))
    view.holdings = holdings(pods)
    return view


def label_checks(node: str, labels: dict[str, str]) -> list[Check]:
    """The GPU Operator's MIG manager owns the layout where its labels are: hami-mig steps back there."""
    who = f"node {node}"
    reason = mig_manager_reason(labels)
    if reason is not None:
        shown = ", ".join(f"{k}={v}" for k, v in operator_labels(labels).items())
        return [fail("cluster.mig-manager", who, f"the GPU Operator's MIG manager manages MIG here ({shown}); "
                     "hami-mig steps back on this node",
                     f"`kubectl label node {node} nvidia.com/gpu.deploy.mig-manager=false --overwrite`, or start the "
                     "agent with --ignore-gpu-operator where the MIG manager surely does not run")]
    checks = [ok("cluster.mig-manager", who, "no GPU Operator MIG manager labels (nvidia.com/mig.config ...), or "
                                             "nvidia.com/gpu.deploy.mig-manager=false")]
    plugin = device_plugin_warning(labels)
    if plugin is not None:
        checks.append(warn("cluster.device-plugin", who, plugin.split("; label the node", 1)[0],
                           f"`kubectl label node {node} nvidia.com/gpu.deploy.device-plugin=false --overwrite`"))
    return checks
