"""Prioritize: binpack fills nodes whose GPUs are already in use; spread prefers the emptiest.

The score is the share of the node's MIG memory slices in use (held or reserved) before this pod,
on kube-scheduler's extender scale 0..MAX_PRIORITY: binpack = 10 * used rounded half up, spread = 10 - that.
kube-scheduler multiplies it by the extender's weight and by MaxNodeScore / MaxExtenderPriority.
"""

from __future__ import annotations

from hami_mig.scheduler.config import ScoreMode
from hami_mig.scheduler.nodeview import NodeView

MAX_PRIORITY = 10
"""k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority."""


def node_score(view: NodeView, mode: ScoreMode, fits: bool) -> int:
    if not fits:
        return 0
    used = int(MAX_PRIORITY * view.used_fraction + 0.5)  # half up, not to even
    return used if mode == "binpack" else MAX_PRIORITY - used
