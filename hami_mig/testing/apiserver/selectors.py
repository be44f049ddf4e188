"""Label and field selectors with the real server's grammar, and its 400s for what it does not support."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from hami_mig.testing.apiserver.errors import StatusError

Predicate = Callable[[Mapping[str, Any]], bool]

# Field labels each resource supports (missing fields read as "", as on the real server).
FIELD_LABELS = {
    "pods": {
        "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
        "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    },
    "nodes": {"metadata.name", "spec.unschedulable"},
    "events": {
        "metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
        "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    },
    "configmaps": {"metadata.name", "metadata.namespace"},
}

_LABEL_KEY = r"(?:[A-Za-z0-9.\-]+/)?[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([A-Za-z0-9_.\-]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


Requirement = Callable[[Mapping[str, str]], bool]


def _in(key: str, values: set[str], negate: bool) -> Requirement:
    return lambda labels: (labels.get(key) in values) != negate


def _equals(key: str, value: str, negate: bool) -> Requirement:
    return lambda labels: (labels.get(key) == value) != negate


def _exists(key: str, negate: bool) -> Requirement:
    return lambda labels: (key in labels) != negate


def label_selector(selector: str | None) -> Predicate:
    if not selector or not selector.strip():
        return lambda obj: True
    requirements: list[Requirement] = []
    for part in _split(selector):
        if match := _SET_RE.match(part):
            values = {value.strip() for value in match.group(4).split(",")}
            requirements.append(_in(match.group(1), values, negate=match.group(3) == "notin"))
        elif match := _EQ_RE.match(part):
            requirements.append(_equals(match.group(1), match.group(4), negate=match.group(3) == "!="))
        elif match := _EXISTS_RE.match(part):
            requirements.append(_exists(match.group(2), negate=match.group(1) == "!"))
        else:
            raise StatusError(400, f"unable to parse requirement: {part.strip()!r} in labelSelector {selector!r}")

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def field_selector(resource: str, selector: str | None) -> Predicate:
    if not selector or not selector.strip():
        return lambda obj: True
    checks: list[tuple[str, str, str]] = []
    for part in _split(selector):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if match is None:
            raise StatusError(400, f"invalid selector: {selector!r}")
        label, op, value = match.groups()
        if label not in FIELD_LABELS.get(resource, set()):
            raise StatusError(400, f'field label not supported: "{label}"')
        checks.append((label, op, value))

    def matches(obj: Mapping[str, Any]) -> bool:
        for label, op, value in checks:
            actual = _field(obj, label)
            if (actual == value) != (op != "!="):
                return False
        return True

    return matches


def _field(obj: Mapping[str, Any], label: str) -> str:
    node: Any = obj
    for part in label.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if label == "source" and isinstance(node, Mapping):
        node = node.get("component")
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)
