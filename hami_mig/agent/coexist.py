"""Running beside the NVIDIA GPU Operator: step back from a node its MIG manager owns instead of fighting it.

The GPU Operator's MIG manager applies the layout named by the node label `nvidia.com/mig.config`
(and reports progress in `nvidia.com/mig.config.state`); GPU feature discovery labels MIG nodes with
`nvidia.com/mig.strategy`. Two agents reshaping the same GPUs destroy each other's instances, so
hami-mig leaves every GPU of such a node alone unless the operator is told not to deploy its MIG
manager there (`nvidia.com/gpu.deploy.mig-manager=false`) or hami-mig runs with `--ignore-gpu-operator`.
"""

from __future__ import annotations

from collections.abc import Mapping

MIG_CONFIG = "nvidia.com/mig.config"
MIG_CONFIG_STATE = "nvidia.com/mig.config.state"
MIG_STRATEGY = "nvidia.com/mig.strategy"
OPERATOR_LABELS = (MIG_CONFIG, MIG_CONFIG_STATE, MIG_STRATEGY)
DEPLOY_MIG_MANAGER = "nvidia.com/gpu.deploy.mig-manager"
DEPLOY_DEVICE_PLUGIN = "nvidia.com/gpu.deploy.device-plugin"


def operator_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in OPERATOR_LABELS if k in labels}


def mig_manager_reason(labels: Mapping[str, str]) -> str | None:
    """Why hami-mig must step back on this node, or None when the GPU Operator does not manage MIG here."""
    found = operator_labels(labels)
    if not found or labels.get(DEPLOY_MIG_MANAGER) == "false":
        return None
    shown = ", ".join(f"{k}={v}" for k, v in found.items())
    return (f"the GPU Operator's MIG manager manages MIG on this node (labels {shown}); hami-mig leaves these GPUs "
            f"alone instead of fighting it. To hand MIG to hami-mig, label the node {DEPLOY_MIG_MANAGER}=false "
            "(or start hami-mig with --ignore-gpu-operator)")


def device_plugin_warning(labels: Mapping[str, str]) -> str | None:
    """The operator's own device plugin would also serve nvidia.com/gpu here: say so once."""
    if not operator_labels(labels) and DEPLOY_DEVICE_PLUGIN not in labels:
        return None
    if labels.get(DEPLOY_DEVICE_PLUGIN) == "false":
        return None
    return (f"GPU Operator labels are present and {DEPLOY_DEVICE_PLUGIN} is not 'false': if the operator's device "
            "plugin runs on this node it also registers nvidia.com/gpu with the kubelet and the two plugins replace "
            f"each other; label the node {DEPLOY_DEVICE_PLUGIN}=false")
