"""The chart's ClusterRole grants exactly the API calls the agent makes: each one, nothing broader."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tests.deploy.chartutil import Manifest, only

Render = Callable[..., list[Manifest]]
Call = tuple[str, str, str]  # (verb, resource, subresource); subresource "" for the resource itself

# The agent's API calls come from the code: hami_mig.kube.client.RBAC_PERMISSIONS, every
# (verb, resource, subresource) of the core ("") API group the adapter uses.
CODE_MODULE = "hami_mig.kube.client"
CODE_CONSTANT = "RBAC_PERMISSIONS"
CORE_GROUP = ""


def agent_api_calls() -> tuple[Call, ...]:
    calls = getattr(importlib.import_module(CODE_MODULE), CODE_CONSTANT, None)
    assert calls, f"{CODE_MODULE}.{CODE_CONSTANT} is missing or empty: the chart's RBAC has nothing to follow"
    for call in calls:
        assert isinstance(call, tuple) and len(call) == 3 and all(isinstance(x, str) for x in call), call
    return tuple(calls)


def granted(rules: Iterable[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """The rules expanded to (group, verb, resource, subresource)."""
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                name, _, sub = resource.partition("/")
                for verb in rule.get("verbs", []):
                    out.add((group, verb, name, sub))
    return out


def rbac_problems(rules: list[dict[str, Any]], calls: Iterable[Call]) -> list[str]:
    """Everything wrong with `rules` for an agent making `calls`: missing grants and anything broader."""
    problems = []
    for i, rule in enumerate(rules):
        for key in ("apiGroups", "resources", "verbs"):
            if any("*" in str(x) for x in rule.get(key, [])):
                problems.append(f"rule {i}: wildcard in {key}: {rule[key]}")
        if "nonResourceURLs" in rule:
            problems.append(f"rule {i}: nonResourceURLs {rule['nonResourceURLs']} (the agent needs none)")
    have = granted(rules)
    calls = set(calls)
    for verb, resource, sub in sorted(calls):
        if (CORE_GROUP, verb, resource, sub) not in have:
            problems.append(f"not granted: {verb} {resource}{'/' + sub if sub else ''}")
    for group, verb, resource, sub in sorted(have):
        if (verb, resource, sub) not in calls or group != CORE_GROUP:
            what = f"{group or 'core'}/{resource}{'/' + sub if sub else ''}"
            problems.append(f"broader than the agent needs: {verb} {what}")
    return problems


def test_cluster_role_grants_exactly_the_agents_calls(render: Render) -> None:
    role = only(render(), "ClusterRole")
    problems = rbac_problems(role["rules"], agent_api_calls())
    assert problems == [], f"ClusterRole vs {CODE_MODULE}.{CODE_CONSTANT}:\n" + "\n".join(problems)


def test_cluster_role_never_touches_secrets_or_configmaps(render: Render) -> None:
    resources = {r for rule in only(render(), "ClusterRole")["rules"] for r in rule["resources"]}
    assert not resources & {"secrets", "configmaps", "pods/exec", "pods/eviction", "nodes/proxy"}


def test_binding_ties_the_role_to_the_agents_service_account(render: Render) -> None:
    objects = render()
    binding = only(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": only(objects, "ClusterRole")["metadata"]["name"]}
    sa = only(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert only(objects, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda rules: rules[0]["verbs"].append("delete"), "broader than the agent needs: delete core/pods"),
        (lambda rules: rules[0]["verbs"].remove("watch"), "not granted: watch pods"),
        (lambda rules: rules.append({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
         "wildcard in resources"),
        (lambda rules: rules.append({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}),
         "wildcard in apiGroups"),
        (lambda rules: rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
         "broader than the agent needs: get core/secrets"),
        (lambda rules: rules.append({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["get"]}),
         "broader than the agent needs: get apps/pods"),
        (lambda rules: rules.append({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}),
         "broader than the agent needs: create events.k8s.io/events"),
        (lambda rules: rules.append({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}), "nonResourceURLs"),
        (lambda rules: next(r for r in rules if r["resources"] == ["nodes/status"])["verbs"].clear(),
         "not granted: patch nodes/status"),
    ],
)
def test_the_check_catches_a_bad_role(render: Render, mutate: Callable[[list[dict[str, Any]]], Any],
                                      expected: str) -> None:
    calls = agent_api_calls()
    rules = only(render(), "ClusterRole")["rules"]
    mutate(rules)
    assert any(expected in p for p in rbac_problems(rules, calls)), rbac_problems(rules, calls)

