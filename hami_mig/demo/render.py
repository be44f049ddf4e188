"""Readable pictures of each GPU's memory slices: which instance, which pod, what is free."""

from __future__ import annotations

from hami_mig.agent.snapshot import GpuView, NodeSnapshot

CELL = 11  # characters per memory slice


def _label(text: str, width: int) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.center(width)


def gpu_lines(gpu: GpuView) -> list[str]:
    geometry = "any layout" if gpu.geometry_index is None else f"geometry {gpu.geometry_index}"
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
