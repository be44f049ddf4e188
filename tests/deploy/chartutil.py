"""Helpers for the deployment tests: the chart's location and the rendered objects' accessors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "hami-mig"
RELEASE = "hami-mig"
NAMESPACE = "kube-system"

Manifest = dict[str, Any]


def parse_manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object Helm rendered (NOTES.txt and empty documents left out)."""
    objects: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: a document that is not a mapping: {doc!r}"
                objects.append(doc)
    return objects


def only(objects: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The one object of `kind` (whose name ends with name_suffix); fails when there are none or several."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind}*{name_suffix}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def agent_container(objects: list[Manifest]) -> Manifest:
    daemonset = only(objects, "DaemonSet")
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def container_args(objects: list[Manifest]) -> list[str]:
    args: list[str] = agent_container(objects)["args"]
    return args


def args_of(objects: list[Manifest]) -> dict[str, str | None]:
    """The agent's `--flag=value` arguments (global ones before `device-plugin`, then the subcommand's) as
    {flag: value}; a bare `--flag` maps to None."""
    args = container_args(objects)
    assert "device-plugin" in args, args
    parsed: dict[str, str | None] = {}
    for arg in args:
        if arg == "device-plugin":
            continue
        assert arg.startswith("--"), f"positional argument: {arg!r}"
        flag, sep, value = arg.partition("=")
        assert flag not in parsed, f"{flag} passed twice"
        parsed[flag] = value if sep else None
    return parsed


def load_values_yaml() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    return values


def merged_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with `overrides` applied the way Helm coalesces them: maps merge, anything else replaces."""

    def merge(base: Any, over: Any) -> Any:
        if not (isinstance(base, dict) and isinstance(over, dict)):
            return copy.deepcopy(over)
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out.get(key), value)
        return out

    merged: dict[str, Any] = merge(load_values_yaml(), overrides)
    return merged
