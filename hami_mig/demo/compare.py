"""The demo's two runs: the shipped default (HAMi's rule and geometries) and best-fit over any layout,
the same scenario each time, then one table side by side so the choice between them is visible."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.core import Stats
from hami_mig.demo.render import LEGEND, WIDTH
from hami_mig.demo.runner import Say, Summary, run_scenario
from hami_mig.demo.scenario import Scenario
from hami_mig.mig.planner import GeometryMode, Policy
from hami_mig.testing.cluster import SimCluster


@dataclass(frozen=True)
class Setting:
    """One planner configuration the scenario runs under."""

    policy: Policy
    geometries: GeometryMode
    name: str
    why: str

    @property
    def flags(self) -> str:
        return f"--policy {self.policy} --geometries {self.geometries}"


DEFAULT = Setting("hami", "config", "the default",
                  "what the agent and the Helm chart run unless told otherwise: HAMi's first-fit rule, "
                  "inside HAMi's knownMigGeometries layouts")
BEST_FIT = Setting("best-fit", "any", "opt-in",
                   "any layout the hardware allows, and the placement that leaves the most room")


def settings_for(policy: Policy | None, geometries: GeometryMode | None) -> list[Setting]:
    """Both runs when neither flag is given; otherwise the one setting asked for (agent defaults elsewhere)."""
    if policy is None and geometries is None:
        return [DEFAULT, BEST_FIT]
    chosen = Setting(policy or DEFAULT.policy, geometries or DEFAULT.geometries, "as asked", "")
    return [chosen]


def run_settings(scenario: Scenario, base: AgentConfig, settings: Sequence[Setting], say: Say, *,
                 sim_gpus: str | None = None, hold: Callable[[SimCluster], None] | None = None,
                 stats: Stats | None = None) -> list[Summary]:
    """Run the scenario once per setting (the last one may `hold` the node), then the side-by-side table."""
    gpus = sim_gpus or scenario.sim_gpus
    if len(settings) > 1:
        say(f"hami-mig demo: one scenario on a simulated node ({gpus}), run {len(settings)} times:")
        for n, s in enumerate(settings, 1):
            say(textwrap.fill(f"{s.flags} ({s.name}): {s.why}", width=WIDTH, initial_indent=f"  run {n}: ",
                              subsequent_indent=" " * 9))
    say("\n" + LEGEND if len(settings) > 1 else LEGEND)
    summaries: list[Summary] = []
    for n, s in enumerate(settings, 1):
        label = f"{s.policy} / {s.geometries}"
        title = f"run {n} of {len(settings)}: {s.flags} ({s.name})" if len(settings) > 1 else s.flags
        say(f"\n{'=' * 16} {title} {'=' * 16}")
        config = replace(base, policy=s.policy, geometries=s.geometries)
        last = n == len(settings)
        summaries.append(run_scenario(scenario, config, say, sim_gpus=sim_gpus, label=label,
                                      stats=stats if last else None, hold=hold if last else None))
    if len(summaries) > 1:
        say("")
        for line in side_by_side(summaries):
            say(line)
    return summaries


def side_by_side(summaries: Sequence[Summary]) -> list[str]:
    """One row per measure, one column per run."""
    rows: list[tuple[str, Callable[[Summary], str]]] = [
        ("pods admitted", lambda s: f"{s.admitted} of {s.submitted}"),
        ("refused although the GPUs had room", lambda s: str(s.refused_with_room)),
        ("refused, no room for it on any GPU", lambda s: str(s.refused - s.refused_with_room - s.rejected)),
        ("refused as not valid on this node", lambda s: str(s.rejected)),
        ("NVML operations (create + destroy)", lambda s: str(s.nvml_ops)),
        ("free instances reused (0 NVML ops)", lambda s: str(s.reused)),
    ]
    width = max(len(name) for name, _ in rows) + 2
    col = max(18, *(len(s.label) + 2 for s in summaries))
    out = ["side by side".ljust(width) + "".join(s.label.rjust(col) for s in summaries)]
    out += [name.ljust(width) + "".join(value(s).rjust(col) for s in summaries) for name, value in rows]
    out.append(textwrap.fill(
        "\"had room\": when the pod was refused, the hardware allowed a placement for it around the instances "
        "in use (what --geometries any may use); \"not valid\": refused before planning (vgpu-mode, values).",
        width=WIDTH))
    return out
