"""A fake `/proc/driver/nvidia-caps/mig-minors` and `/proc/devices` for the simulated node.

The driver lists every possible capability up front, in this order: `config 1`, `monitor 2`, then per
GPU minor `gpu<g>/gi<i>/access` followed by its `gpu<g>/gi<i>/ci<c>/access` lines (15 GI ids, 8 CI ids),
numbered consecutively, so `gpu0/gi1/access` is 12 and `gpu0/gi1/ci0/access` is 13.
"""

from __future__ import annotations

from pathlib import Path

GI_IDS = 15
CI_IDS = 8
CAPS_MAJOR = 511


def mig_minors_text(gpus: int = 8) -> str:
    lines = ["config 1", "monitor 2"]
    minor = 3
    for g in range(gpus):
        for gi in range(GI_IDS):
            lines.append(f"gpu{g}/gi{gi}/access {minor}")
            minor += 1
            for ci in range(CI_IDS):
                lines.append(f"gpu{g}/gi{gi}/ci{ci}/access {minor}")
                minor += 1
    return "\n".join(lines) + "\n"


def proc_devices_text(caps_major: int = CAPS_MAJOR) -> str:
    return ("Character devices:\n  1 mem\n195 nvidia-frontend\n"
            f"{caps_major} nvidia-caps\n510 nvidia-uvm\n\nBlock devices:\n  8 sd\n")


def write_fake_proc(root: str | Path, gpus: int = 8) -> Path:
    """A directory laid out like /proc for the files hami-mig reads; returns it."""
    base = Path(root)
    (base / "driver" / "nvidia-caps").mkdir(parents=True, exist_ok=True)
    (base / "driver" / "nvidia-caps" / "mig-minors").write_text(mig_minors_text(gpus), encoding="utf-8")
    (base / "devices").write_text(proc_devices_text(), encoding="utf-8")
    return base


def add_fake_process(root: str | Path, pid: int, comm: str, open_files: tuple[str, ...] = ()) -> None:
    """`/proc/<pid>/comm` and fd symlinks to `open_files` (device files need not exist)."""
    proc = Path(root) / str(pid)
    (proc / "fd").mkdir(parents=True, exist_ok=True)
    (proc / "comm").write_text(comm + "\n", encoding="utf-8")
    for n, target in enumerate(open_files, start=3):
        (proc / "fd" / str(n)).symlink_to(target)
