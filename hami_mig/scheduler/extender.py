"""The extender's endpoints as functions of JSON documents; `server.py` puts them on HTTP."""

from __future__ import annotations

import logging
from typing import Any

from hami_mig.kube.annotations import VGPU_NODE
from hami_mig.kube.errors import ApiError
from hami_mig.scheduler import objects as o
from hami_mig.scheduler.bind import Binder, BindError
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.fit import NodeFit, PodRequestError, Query, fit, pod_requests
from hami_mig.scheduler.gpu_filters import gpu_filter
from hami_mig.scheduler.hami_node import pod_policy
from hami_mig.scheduler.nodeview import NodeView
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.protocol import ExtenderArgs, filter_result, parse_binding_args, parse_extender_args
from hami_mig.scheduler.score import node_score
from hami_mig.scheduler.snapshot import ApiSource, ClusterSource, Snapshot
from hami_mig.scheduler.views import ViewCache
from hami_mig.scheduler.webhook import Webhook

log = logging.getLogger(__name__)
NOT_FOUND = "node not found in the API (deleted, or not yet seen)"


class Extender:
    def __init__(self, config: SchedulerConfig, source: ClusterSource, binder: Binder | None = None,
                 planner: NodePlanner | None = None) -> None:
        self.config = config
        self.planner = planner or NodePlanner(config)
        self.views = ViewCache(self.planner, config.names)
        self.source = source
        self.binder = binder
        self.webhook = Webhook(config)
        if isinstance(source, ApiSource) and source.warm is None:
            source.warm = self.views.warm  # views are built by the cache refresh, not by the next filter

    # --- filter ---------------------------------------------------------------------------------
    def node_views(self, args: ExtenderArgs, snapshot: Snapshot) -> dict[str, NodeView | None]:
        out: dict[str, NodeView | None] = {}
        if args.nodes is not None:
            for node in args.nodes:
                out[o.name(node)] = self.views.in_snapshot(snapshot, o.name(node), node)
        else:
            for name in args.names:
                out[name] = self.views.in_snapshot(snapshot, name)
        own = o.annotations_of(args.pod).get(VGPU_NODE, "")
        if own in out and o.uid(args.pod):  # a failed earlier bind may have left the pod's own reservation
            pods = [p for p in snapshot.pods_on(own) if o.uid(p) != o.uid(args.pod)]
            given = {o.name(n): n for n in args.nodes or ()}
            found = given.get(own) or snapshot.nodes.get(own)
            if found is not None:
                out[own] = self.views.view(found, pods)
        return out

    def fits(self, args: ExtenderArgs) -> tuple[dict[str, NodeFit], dict[str, NodeView | None]]:
        """Per node: does the pod fit (raises PodRequestError, ApiError)."""
        query = Query(pod_requests(args.pod, self.config.names), self.planner, pod_policy(args.pod),
                      gpu_filter(o.annotations_of(args.pod)))
        snapshot = self.source.snapshot()
        if args.nodes is None and any(n not in snapshot.nodes for n in args.names):
            snapshot = self.source.snapshot(fresh=True)
        views = self.node_views(args, snapshot)
        result = {name: (fit(view, query, self.planner) if view is not None
                         else NodeFit(name, False, NOT_FOUND, permanent=True)) for name, view in views.items()}
        return result, views

    def filter(self, doc: Any) -> dict[str, Any]:
        args = parse_extender_args(doc)
        try:
            if not pod_requests(args.pod, self.config.names):  # HAMi's Filter: no device asked, every node passes
                return filter_result(args, args.names, {}, {})
            fits, _ = self.fits(args)
        except PodRequestError as exc:
            reason = f"pod {o.key(args.pod)}: {exc}"
            every = dict.fromkeys(args.names, reason)
            return filter_result(args, [], every, every)
        except ApiError as exc:
            return filter_result(args, [], {}, {}, error=f"hami-mig extender cannot read the cluster: {exc}")
        failed = {n: f.reason for n, f in fits.items() if not f.fits}
        unresolvable = {n: f.reason for n, f in fits.items() if not f.fits and f.permanent}
        passed = [n for n, f in fits.items() if f.fits]
        log.debug("filter %s: %d of %d nodes fit", o.key(args.pod), len(passed), len(fits))
        return filter_result(args, passed, failed, unresolvable)

    # --- prioritize -----------------------------------------------------------------------------
    def prioritize(self, doc: Any) -> list[dict[str, Any]]:
        args = parse_extender_args(doc)
        try:
            fits, views = self.fits(args)
        except (PodRequestError, ApiError) as exc:
            log.warning("prioritize %s: %s", o.key(args.pod), exc)
            return [{"host": n, "score": 0} for n in args.names]
        out = []
        for name in args.names:
            view = views.get(name)
            verdict = fits.get(name)
            fitting = view is not None and verdict is not None and verdict.fits
            out.append({"host": name, "score": node_score(view, self.config.score, fitting) if view else 0})
        return out

    # --- bind -----------------------------------------------------------------------------------
    def bind(self, doc: Any) -> dict[str, Any]:
        args = parse_binding_args(doc)
        if self.binder is None:
            return {"error": "this extender has no API access to bind with"}
        try:
            self.binder.bind(args)
        except BindError as exc:
            log.warning("%s", exc)
            return {"error": str(exc)}
        return {"error": ""}

    # --- webhook --------------------------------------------------------------------------------
    def admit(self, doc: Any) -> dict[str, Any]:
        return self.webhook.review(doc)
