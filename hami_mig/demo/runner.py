"""Runs a scenario against a SimCluster and tells what happened, step by step, then a summary."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.core import NullStats, Stats
from hami_mig.demo.render import WIDTH, node_picture, refusal_lines
from hami_mig.demo.scenario import Scenario, Step
from hami_mig.demo.why import why_not_reused
from hami_mig.errors import InputError
from hami_mig.kube.annotations import DEVICES_ALLOCATED
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState
from hami_mig.testing.cluster import SimCluster

Say = Callable[[str], None]


@dataclass
class Summary:
    """What one run of a scenario came to; the side-by-side table compares two of these."""

    label: str = ""
    submitted: int = 0
    admitted: int = 0
    refused: int = 0
    refused_with_room: int = 0  # the planner said no although some placement on the GPUs could host the pod
    rejected: int = 0  # refused as not valid on this node (vgpu-mode, a bad value), before any planning
    reshapes: int = 0
    reused: int = 0
    nvml_ops: int = 0
    refusals: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"pods submitted: {self.submitted}, admitted: {self.admitted}, refused: {self.refused}"
            + (f" ({self.refused_with_room} of them although the GPUs had room for the pod)"
               if self.refused_with_room else ""),
            f"allocations that reshaped a GPU: {self.reshapes}; reused a free instance (0 NVML ops): {self.reused}",
            f"NVML mutating operations: {self.nvml_ops}"
            + (f" ({self.nvml_ops / self.admitted:.2f} per admitted pod)" if self.admitted else ""),
        ]


class _LastOutcome(NullStats):
    """The agent's stats, remembering how the last Allocate ended: `failed` = the planner found no room."""

    def __init__(self, inner: Stats | None) -> None:
        self.inner: Stats = inner or NullStats()
        self.last = ""

    def observe_allocate(self, seconds: float, outcome: str) -> None:
        self.last = outcome
        self.inner.observe_allocate(seconds, outcome)

    def count_reshape(self, op: str, result: str) -> None:
        self.inner.count_reshape(op, result)

    def count_nvml_error(self, code_name: str) -> None:
        self.inner.count_nvml_error(code_name)

    def count_reconcile_repair(self, kind: str) -> None:
        self.inner.count_reconcile_repair(kind)

    def count_api_error(self, kind: str) -> None:
        self.inner.count_api_error(kind)


def run_scenario(scenario: Scenario, config: AgentConfig, say: Say, *, sim_gpus: str | None = None,
                 hold: Callable[[SimCluster], None] | None = None, stats: Stats | None = None,
                 label: str = "") -> Summary:
    summary = Summary(label=label)
    recorder = _LastOutcome(stats)
    with SimCluster(config, sim_gpus=sim_gpus or scenario.sim_gpus, stats=recorder) as cluster:
        say(f"scenario: {scenario.name}")
        say(node_picture(cluster.agent.snapshot()) if cluster.agent else "")
        refused: set[str] = set()
        n = 0
        for step in scenario.steps:
            if step.action == "note":
                say("\n" + textwrap.fill(step.text, width=WIDTH, initial_indent="# ", subsequent_indent="# "))
                continue
            n += 1
            say(f"\n[{n}] {step.describe()}")
            _step(cluster, step, say, summary, recorder, refused)
        say(f"\nsummary{f' ({label})' if label else ''}")
        for line in summary.lines():
            say("  " + line)
        if hold is not None:
            hold(cluster)
    return summary


def node_states(cluster: SimCluster) -> list[GpuState]:
    """The planner's view of the node now: instances held by a pod (or running processes) are in use."""
    assert cluster.agent is not None
    held = {i.mig_uuid for g in cluster.agent.snapshot().gpus for i in g.instances
            if i.state == "in_use" and i.mig_uuid}
    return [d.to_gpu_state(held) for d in cluster.backend.devices() if d.mig_enabled and d.model is not None]


def _request(limits: Mapping[str, int]) -> Request | None:
    try:
        return Request(count=limits.get("nvidia.com/gpu", 1), memory_mib=limits.get("nvidia.com/gpumem"),
                       memory_percent=limits.get("nvidia.com/gpumem-percentage"),
                       cores=limits.get("nvidia.com/gpucores"))
    except InputError:
        return None


def _had_room(before: list[GpuState], limits: Mapping[str, int]) -> bool:
    """Whether any layout the hardware allows could have hosted the pod on the node as it was."""
    request = _request(limits)
    return request is not None and decide(before, request, None, policy="best-fit", mode="any").fits


def _submit(cluster: SimCluster, step: Step, say: Say, summary: Summary, recorder: _LastOutcome,
            refused: set[str]) -> None:
    summary.submitted += 1
    before = node_states(cluster)
    cluster.submit(step.pod, step.limits, annotations=step.annotations or None)
    recorder.last = ""
    result = cluster.admit(step.pod, count=step.limits.get("nvidia.com/gpu", 1))
    if not result.ok:
        summary.refused += 1
        refused.add(step.pod)
        summary.refusals.append(f"{step.pod}: {result.error}")
        if recorder.last == "rejected":
            summary.rejected += 1
        elif _had_room(before, step.limits):
            summary.refused_with_room += 1
        for line in refusal_lines(result.error, step.pod):
            say(line)
        return
    summary.admitted += 1
    agent = cluster.agent
    outcome = agent.history[-1] if agent and agent.history else None
    if outcome is not None:
        ops = outcome.decision.operations
        summary.nvml_ops += len(ops)
        if ops:
            summary.reshapes += 1
        else:
            summary.reused += 1
        for note in outcome.decision.notes:
            say(f"    plan: {note}")
        say("    NVML: " + ("; ".join(f"{o.op} {o.profile}@{o.start} on GPU {o.gpu_index}" for o in ops)
                         if ops else "nothing (a free instance was reused)"))
        for allocation in outcome.decision.allocations:
            why = why_not_reused(before, allocation, cluster.config.policy)
            if why:
                say("\n".join(textwrap.wrap(why, width=WIDTH, initial_indent="    ", subsequent_indent="      ")))
    ann = cluster.api.get_pod("default", step.pod)["metadata"].get("annotations", {})
    say(f"    container gets NVIDIA_VISIBLE_DEVICES={result.envs.get('NVIDIA_VISIBLE_DEVICES', '')}")
    say(f"    annotation {DEVICES_ALLOCATED}: {ann.get(DEVICES_ALLOCATED, '')}")


def _step(cluster: SimCluster, step: Step, say: Say, summary: Summary, recorder: _LastOutcome,
          refused: set[str]) -> None:
    if step.action == "submit":
        _submit(cluster, step, say, summary, recorder, refused)
        if step.pod in refused:
            return
    elif step.action in ("finish", "delete"):
        if step.pod in refused:
            say(f"    {step.pod} was refused: it holds nothing to release")
        cluster.finish(step.pod, delete=step.action == "delete")
        cluster.reconcile()
    elif step.action == "restart-agent":
        cluster.stop_agent()
        cluster.start_agent()
        say("    agent restarted; instances held by running pods were left as they were")
    elif step.action == "restart-kubelet":
        cluster.kubelet.restart()
        cluster.kubelet.wait_for_registration("nvidia.com/gpu", timeout=5)
        say("    kubelet restarted; the agent registered again")
    if cluster.agent is not None:
        say(node_picture(cluster.agent.snapshot()))


def plain_say(text: str) -> None:
    """The demo's output: plain text, flushed line by line (a terminal, a pipe or a CI log alike)."""
    print(text, flush=True)
