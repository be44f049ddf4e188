"""CDI specs for the MIG instances hami-mig hands out: one small JSON file per instance.

Instances are made on the fly, so a spec generated once at boot (`nvidia-ctk cdi generate`) cannot
name them. With `--cdi` the agent writes `<cdi-dir>/hami-mig_<MIG-uuid>.json` before Allocate
answers with `nvidia.com/gpu=<MIG-uuid>` (nvidia-ctk's `uuid` device-name strategy), and removes the
file when the instance is destroyed. Each file is written to a temporary name and renamed, so a
runtime scanning the directory never reads half a spec.

The spec carries device nodes only. The driver's user-space libraries come from the spec that
`nvidia-ctk cdi generate` writes for the node: with `--cdi-base-spec` its top-level containerEdits
(library mounts, hooks) are copied into every per-instance spec.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from hami_mig.errors import HamiMigError
from hami_mig.nvml.migmode import MigDeviceNodes

log = logging.getLogger(__name__)

CDI_VERSION = "0.5.0"
CDI_KIND = "nvidia.com/gpu"
SPEC_PREFIX = "hami-mig_"
SPEC_SUFFIX = ".json"
DEFAULT_CDI_DIR = "/var/run/cdi"
DEFAULT_MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"
COMMON_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")  # the CDI parser's device-name rule


class CdiError(HamiMigError):
    """A spec could not be written (or its facts not found); Allocate fails and undoes what it made."""


def parse_mig_minors(text: str) -> dict[str, int]:
    """`gpu0/gi1/access 12` lines -> {"gpu0/gi1/access": 12}; other lines (config, monitor, blanks) kept too."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def caps_major(proc_devices: str) -> int | None:
    """The dynamic major number of `nvidia-caps` in /proc/devices, if listed."""
    for line in proc_devices.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "nvidia-caps" and parts[0].isdigit():
            return int(parts[0])
    return None


def build_spec(dev: MigDeviceNodes, minors: Mapping[str, int], major: int | None = None) -> dict[str, Any]:
    """The CDI spec of one MIG device: the GPU's nodes, its two MIG capability nodes, and no legacy injection.

    The GPU minor names /dev/nvidia<N> and the `gpu<N>/…` capability lines; when the driver does
    not report it, the GPU index stands in (equal on nodes without hidden or renumbered GPUs).
    """
    if not _DEVICE_NAME.match(dev.mig_uuid):
        raise CdiError(f"MIG device {dev.mig_uuid!r} is not a valid CDI device name (a driver before R470 names "
                       "MIG devices MIG-GPU-<uuid>/<gi>/<ci>; CDI needs R470 or later)")
    gpu = dev.gpu_minor if dev.gpu_minor is not None else dev.gpu_index
    caps: list[dict[str, Any]] = []
    for key in (f"gpu{gpu}/gi{dev.gi_id}/access", f"gpu{gpu}/gi{dev.gi_id}/ci{dev.ci_id}/access"):
        minor = minors.get(key)
        if minor is None:
            raise CdiError(f"MIG device {dev.mig_uuid} (GPU {dev.gpu_index}, GI {dev.gi_id}, CI {dev.ci_id}): the "
                           f"mig-minors table has no {key!r} line; point --mig-minors at the host's "
                           "/proc/driver/nvidia-caps/mig-minors")
        node: dict[str, Any] = {"path": f"/dev/nvidia-caps/nvidia-cap{minor}"}
        if major is not None:  # lets the runtime create the node even where the host has not made it yet
            node.update({"type": "c", "major": major, "minor": minor})
        caps.append(node)
    nodes = [{"path": p} for p in COMMON_NODES] + [{"path": f"/dev/nvidia{gpu}"}] + caps
    return {
        "cdiVersion": CDI_VERSION,
        "kind": CDI_KIND,
        "devices": [{
            "name": dev.mig_uuid,
            # void: the NVIDIA runtime hook must not inject devices of its own next to these
            "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"], "deviceNodes": nodes},
        }],
    }


def load_base_edits(path: Path) -> dict[str, Any]:
    """The top-level containerEdits of a CDI spec file (YAML or JSON), e.g. nvidia-ctk's generated one."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CdiError(f"--cdi-base-spec {path}: cannot read a CDI spec: {exc}") from None
    edits = doc.get("containerEdits") if isinstance(doc, dict) else None
    if not isinstance(edits, dict):
        raise CdiError(f"--cdi-base-spec {path}: no top-level containerEdits (driver library mounts, hooks) in it; "
                       "generate it with `nvidia-ctk cdi generate`")
    return edits


def merge_edits(own: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Own edits plus the base spec's, without duplicates; the base's NVIDIA_VISIBLE_DEVICES never wins."""
    out: dict[str, Any] = {k: list(v) for k, v in own.items()}
    env = [e for e in base.get("env") or [] if isinstance(e, str) and not e.startswith("NVIDIA_VISIBLE_DEVICES=")]
    out["env"] = out.get("env", []) + [e for e in env if e not in out.get("env", [])]
    paths = {n["path"] for n in out.get("deviceNodes", [])}
    out["deviceNodes"] = out.get("deviceNodes", []) + [n for n in base.get("deviceNodes") or []
                                                       if isinstance(n, dict) and n.get("path") not in paths]
    for key in ("mounts", "hooks"):
        if base.get(key):
            out[key] = list(base[key])
    return out


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a hidden temporary name in the same directory, fsync, chmod, rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.fchmod(fd, mode)  # the umask must not narrow what the runtime may read
    finally:
        os.close(fd)
    os.replace(tmp, path)


class CdiSpecs:
    """The agent's spec files in one CDI directory. Files not named `hami-mig_*.json` are never touched."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_CDI_DIR,
                 mig_minors: str | os.PathLike[str] = DEFAULT_MIG_MINORS,
                 proc_devices: str | os.PathLike[str] = "/proc/devices",
                 base_spec: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        self.mig_minors = Path(mig_minors)
        self.proc_devices = Path(proc_devices)
        self.base_spec = Path(base_spec) if base_spec else None
        self._minors: dict[str, int] = {}

    def path_for(self, mig_uuid: str) -> Path:
        return self.directory / f"{SPEC_PREFIX}{mig_uuid}{SPEC_SUFFIX}"

    def has(self, mig_uuid: str) -> bool:
        return self.path_for(mig_uuid).is_file()

    def _tables(self, need: str) -> tuple[dict[str, int], int | None]:
        if need not in self._minors:  # the table is fixed per boot; re-read only when a line is missing
            try:
                self._minors = parse_mig_minors(self.mig_minors.read_text(encoding="utf-8"))
            except OSError as exc:
                raise CdiError(f"cannot read the MIG capability table {self.mig_minors} (--mig-minors): "
                               f"{exc.strerror or exc}") from None
        try:
            major = caps_major(self.proc_devices.read_text(encoding="utf-8"))
        except OSError:
            major = None
        return self._minors, major

    def write(self, dev: MigDeviceNodes) -> Path:
        """Write (or rewrite) the spec for one MIG device; CdiError names the file and the cause."""
        gpu = dev.gpu_minor if dev.gpu_minor is not None else dev.gpu_index
        minors, major = self._tables(f"gpu{gpu}/gi{dev.gi_id}/ci{dev.ci_id}/access")
        spec = build_spec(dev, minors, major)
        if self.base_spec is not None:  # read each time: nvidia-ctk regenerates it after a driver upgrade
            device = spec["devices"][0]
            device["containerEdits"] = merge_edits(device["containerEdits"], load_base_edits(self.base_spec))
        path = self.path_for(dev.mig_uuid)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(path, (json.dumps(spec, indent=2) + "\n").encode())
        except OSError as exc:
            raise CdiError(f"CDI spec {path}: cannot write: {exc.strerror or exc} (is --cdi-dir "
                           f"{self.directory} the host's CDI directory, mounted read-write?)") from None
        log.debug("CDI spec %s written for %s", path, dev.mig_uuid)
        return path

    def remove(self, mig_uuid: str) -> bool:
        try:
            self.path_for(mig_uuid).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("CDI spec for %s not removed: %s", mig_uuid, exc)
            return False
        log.debug("CDI spec for %s removed", mig_uuid)
        return True

    def owned(self) -> set[str]:
        """MIG UUIDs that have a spec file of ours."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return set()
        return {n[len(SPEC_PREFIX):-len(SPEC_SUFFIX)] for n in names
                if n.startswith(SPEC_PREFIX) and n.endswith(SPEC_SUFFIX)}

    def prune(self, present: Collection[str]) -> list[str]:
        """Remove the specs of instances that no longer exist; returns their MIG UUIDs."""
        keep = set(present)
        gone = sorted(u for u in self.owned() if u not in keep)
        return [u for u in gone if self.remove(u)]
