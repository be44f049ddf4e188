"""Readable pictures of each GPU's memory slices: which instance, which pod, what is free."""

from __future__ import annotations

import re
import textwrap

from hami_mig.agent.snapshot import GpuView, NodeSnapshot

CELL = 11  # characters per memory slice
WIDTH = 100  # refusal reasons are wrapped to this width, at most REASON_LINES lines
REASON_LINES = 3

LEGEND = textwrap.fill(
    "How to read a GPU picture: one column per memory slice; a box per MIG instance with its profile and the "
    "pod that holds it (\"free\": no pod holds it, \"busy\": processes run but no pod holds it); \"·\" an "
    "unused slice. The header names the GPU's layout: \"HAMi geometry N\" when it is entry N of HAMi's "
    "knownMigGeometries list for this model (--geometries config keeps every GPU inside one of those), "
    "\"outside HAMi's geometries\" when it is none of them (only --geometries any makes such layouts), "
    "\"no instances\" on an empty GPU. Refusal reasons are cut to 3 lines: the pod's Event has them whole, "
    "and `hami-mig explain` shows the planner's reasoning geometry by geometry.", width=WIDTH)


def _label(text: str, width: int) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.center(width)


def gpu_lines(gpu: GpuView) -> list[str]:
    geometry = "outside HAMi's geometries" if gpu.geometry_index is None else f"HAMi geometry {gpu.geometry_index}"
    head = f"GPU {gpu.index} {gpu.name} ({gpu.memory_mib} MiB) — {geometry if gpu.instances else 'no instances'}"
    if not gpu.managed:
        return [head, f"  not managed: {gpu.reason}"]
    slices = gpu.memory_slices or 8
    owners: dict[int, tuple[int, str, str]] = {}
    for inst in gpu.instances:
        who = inst.holder.pod if inst.holder else ("free" if inst.state == "free" else "busy")
        owners[inst.start] = (inst.size, inst.profile, who)
    top: list[str] = []
    bottom: list[str] = []
    s = 0
    while s < slices:
        if s in owners:
            size, profile, who = owners[s]
            width = size * CELL - 1
            top.append(_label(profile, width))
            bottom.append(_label(who, width))
            s += size
        else:
            top.append(_label("·", CELL - 1))
            bottom.append(_label("", CELL - 1))
            s += 1
    ruler = "".join(f"{n:<{CELL}}" for n in range(slices))
    return [head, "  slices " + ruler.rstrip(), "         |" + "|".join(top) + "|",
            "         |" + "|".join(bottom) + "|"]


def node_picture(snapshot: NodeSnapshot) -> str:
    lines: list[str] = []
    for gpu in snapshot.gpus:
        lines += gpu_lines(gpu)
    return "\n".join(lines)


def refusal_lines(reason: str, pod: str) -> list[str]:
    """A refusal as the kubelet saw it, cut to a readable size: no pod prefix, no GPU UUIDs, 3 lines at most."""
    text = reason.removeprefix(f"pod default/{pod}: ")
    text = re.sub(r" \(GPU-[0-9a-fA-F-]+\)", "", text)
    return textwrap.wrap(text, width=WIDTH, initial_indent="    refused: ", subsequent_indent=" " * 13,
                         max_lines=REASON_LINES, placeholder=" …")
