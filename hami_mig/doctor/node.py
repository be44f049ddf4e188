"""The node's files: the kubelet device-plugins directory, the CDI directory and the NVIDIA Container Toolkit."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from hami_mig.agent.cdi import SPEC_PREFIX
from hami_mig.agent.core import SOCKET_NAME
from hami_mig.doctor.report import Check, fail, ok, warn
from hami_mig.plugin.protocol import KUBELET_SOCKET

OTHER_GPU_PLUGIN = "nvidia-gpu.sock"  # NVIDIA's and HAMi's device plugins both register nvidia.com/gpu here
# Where the GPU Operator installs the toolkit on the host, besides $PATH.
TOOLKIT_DIRS = ("/usr/local/nvidia/toolkit", "/usr/bin", "/usr/local/bin")
CTK_TIMEOUT_S = 5.0


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def kubelet_check(directory: Path) -> list[Check]:
    """The kubelet's socket must be in the directory the agent registers in; another nvidia.com/gpu plugin must not."""
    where = str(directory)
    fix_dir = ("point --kubelet-dir (chart: agent.kubeletDir) at <kubelet --root-dir>/device-plugins, e.g. "
               "/var/lib/k0s/kubelet/device-plugins on k0s")
    if not directory.is_dir():
        return [fail("node.kubelet", "kubelet", f"device-plugins directory {where} does not exist", fix_dir)]
    sock = directory / KUBELET_SOCKET
    if not _is_socket(sock):
        return [fail("node.kubelet", "kubelet", f"no {KUBELET_SOCKET} socket in {where}: the kubelet is not running "
                                                "or its --root-dir is elsewhere", f"start the kubelet, or {fix_dir}")]
    try:
        others = sorted(p.name for p in directory.iterdir()
                        if p.name not in (KUBELET_SOCKET, SOCKET_NAME) and _is_socket(p))
    except OSError:
        others = []
    checks = [ok("node.kubelet", "kubelet", f"{sock} is a socket; other plugin sockets: {', '.join(others) or 'none'}")]
    if OTHER_GPU_PLUGIN in others:
        checks.append(warn("node.device-plugin", "kubelet",
                           f"{directory / OTHER_GPU_PLUGIN} exists: NVIDIA's or HAMi's own device plugin serves "
                           "nvidia.com/gpu on this node (or did, and left its socket), and two plugins of one "
                           "resource replace each other",
                           "disable it on this node (GPU Operator: label nvidia.com/gpu.deploy.device-plugin=false; "
                           "HAMi: remove the node label gpu=on)"))
    return checks


def cdi_check(directory: Path) -> Check:
    """Only the agent's --cdi mode needs it: a warning, never a failure."""
    where = str(directory)
    why = "needed only when the agent runs with --cdi"
    if not directory.is_dir():
        return warn("node.cdi", "CDI", f"CDI directory {where} does not exist ({why})",
                    f"`sudo mkdir -p {where}` and enable CDI in the runtime (containerd >= 1.7 enable_cdi = true, "
                    "CRI-O >= 1.23) before turning on --cdi")
    if not os.access(directory, os.W_OK):
        return warn("node.cdi", "CDI", f"{where} is not writable by this process ({why}: the agent writes a spec per "
                                       "instance there)", "run as root, or mount it read-write into the agent")
    try:
        names = sorted(p.name for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    except OSError as exc:
        return warn("node.cdi", "CDI", f"{where} cannot be listed: {exc.strerror or exc}", "run as root")
    ours = [n for n in names if n.startswith(SPEC_PREFIX)]
    base = [n for n in names if not n.startswith(SPEC_PREFIX)]
    if not base:
        return warn("node.cdi", "CDI", f"{where} holds no spec from `nvidia-ctk cdi generate` ({len(ours)} hami-mig "
                                       "spec(s)); --cdi-base-spec would have no driver libraries to copy",
                    f"`sudo nvidia-ctk cdi generate --output={where}/nvidia.yaml`")
    return ok("node.cdi", "CDI", f"{where}: {', '.join(base)} and {len(ours)} hami-mig spec(s)")


def toolkit_check(path_env: str | None = None) -> Check:
    """`nvidia-ctk --version` (reads nothing on the GPUs) tells the toolkit is installed."""
    search = os.pathsep.join([path_env if path_env is not None else os.environ.get("PATH", ""), *TOOLKIT_DIRS])
    found = shutil.which("nvidia-ctk", path=search)
    fix = ("install the NVIDIA Container Toolkit on the host (the GPU Operator installs it under "
           "/usr/local/nvidia/toolkit); containers get the driver through it")
    if found is None:
        return warn("node.toolkit", "nvidia-ctk", "not found on $PATH or in " + ", ".join(TOOLKIT_DIRS), fix)
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=CTK_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return warn("node.toolkit", "nvidia-ctk", f"{found} does not run: {exc}", fix)
    first = (out.stdout or out.stderr).strip().splitlines()
    if out.returncode != 0:
        return warn("node.toolkit", "nvidia-ctk", f"`{found} --version` exited {out.returncode}: "
                                                  f"{first[0] if first else 'no output'}", fix)
    return ok("node.toolkit", "nvidia-ctk", f"{found}: {first[0] if first else 'version unknown'}")
