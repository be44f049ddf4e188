"""Runs a scenario against a SimCluster and tells what happened, step by step, then a summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.core import Stats
from hami_mig.demo.render import node_picture
from hami_mig.demo.scenario import Scenario, Step
from hami_mig.kube.annotations import DEVICES_ALLOCATED
from hami_mig.testing.cluster import SimCluster

Say = Callable[[str], None]


@dataclass
class Summary:
    submitted: int = 0
    admitted: int = 0
    refused: int = 0
    reshapes: int = 0
    reused: int = 0
    nvml_ops: int = 0
    seconds: float = 0.0
    refusals: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"pods submitted: {self.submitted}, admitted: {self.admitted}, refused: {self.refused}",
            f"allocations that reshaped a GPU: {self.reshapes}; reused a free instance (0 NVML ops): {self.reused}",
            f"NVML mutating operations: {self.nvml_ops}"
            + (f" ({self.nvml_ops / self.admitted:.2f} per admitted pod)" if self.admitted else ""),
            f"time: {self.seconds:.2f}s",
        ]


def run_scenario(scenario: Scenario, config: AgentConfig, say: Say, *, sim_gpus: str | None = None,
                 hold: Callable[[SimCluster], None] | None = None, stats: Stats | None = None) -> Summary:
    summary = Summary()
    started = time.monotonic()
    with SimCluster(config, sim_gpus=sim_gpus or scenario.sim_gpus, stats=stats) as cluster:
        say(f"scenario: {scenario.name}")
        say(node_picture(cluster.agent.snapshot()) if cluster.agent else "")
        for n, step in enumerate(scenario.steps, 1):
            _step(cluster, n, step, say, summary)
        summary.seconds = time.monotonic() - started
        say("\nsummary")
        for line in summary.lines():
            say("  " + line)
        if hold is not None:
            hold(cluster)
    return summary


def _step(cluster: SimCluster, n: int, step: Step, say: Say, summary: Summary) -> None:
    if step.action == "note":
        say(f"\n# {step.text}")
        return
    say(f"\n[{n}] {step.describe()}")
    if step.action == "submit":
        summary.submitted += 1
        cluster.submit(step.pod, step.limits, annotations=step.annotations or None)
        count = step.limits.get("nvidia.com/gpu", 1)
        result = cluster.admit(step.pod, count=count)
        if not result.ok:
            summary.refused += 1
            summary.refusals.append(f"{step.pod}: {result.error}")
            say(f"    refused: {result.error}")
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
        ann = cluster.api.get_pod("default", step.pod)["metadata"].get("annotations", {})
        say(f"    container gets NVIDIA_VISIBLE_DEVICES={result.envs.get('NVIDIA_VISIBLE_DEVICES', '')}")
        say(f"    annotation {DEVICES_ALLOCATED}: {ann.get(DEVICES_ALLOCATED, '')}")
    elif step.action in ("finish", "delete"):
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


def console_say(plain: bool | None = None) -> Say:
    """Rich output on a terminal, plain text otherwise (CI logs, pipes)."""
    if plain is None:
        plain = not sys.stdout.isatty()
    if plain:
        return lambda text: print(text, flush=True)
    from rich.console import Console

    console = Console(highlight=False)
    return lambda text: console.print(text, markup=False)
