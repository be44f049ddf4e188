"""Demo scenarios: a list of steps (submit, finish, delete, restart) in YAML; one is embedded as the default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hami_mig.errors import InputError
from hami_mig.mig.yamldoc import load_yaml

Action = Literal["submit", "finish", "delete", "restart-agent", "restart-kubelet", "note"]
ACTIONS: tuple[Action, ...] = ("submit", "finish", "delete", "restart-agent", "restart-kubelet", "note")


@dataclass(frozen=True)
class Step:
    action: Action
    pod: str = ""
    limits: Mapping[str, int] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    def describe(self) -> str:
        if self.action == "submit":
            ask = ", ".join(f"{k.split('/')[-1]}={v}" for k, v in self.limits.items())
            mode = f" (vgpu-mode {self.annotations['nvidia.com/vgpu-mode']})" if self.annotations else ""
            return f"submit {self.pod}: {ask}{mode}"
        if self.action in ("finish", "delete"):
            return f"{self.action} {self.pod}"
        if self.action == "note":
            return self.text
        return self.action.replace("-", " ")


@dataclass(frozen=True)
class Scenario:
    name: str
    sim_gpus: str
    steps: tuple[Step, ...]


DEFAULT_SCENARIO = """
name: two A100-80GB shared by inference and training pods
sim_gpus: A100-SXM4-80GB:2
steps:
- note: two small inference pods (8-9 GB) each get a 1g.10gb instance, carved when the pod arrives
- submit: infer-a
  gpumem: 8000
- submit: infer-b
  gpumem: 9000
- note: >-
    a 15 GB pod needs a 2g.20gb. --geometries config keeps each GPU inside one of HAMi's layouts for
    its model; --geometries any may carve the instance beside the pods already running
- submit: embed
  gpumem: 15000
- note: a pod that names no memory asks for a whole GPU (7g.80gb); only an idle GPU can host it
- submit: whole
  gpu: 1
- note: >-
    half a GPU (a 3g.40gb) while the node is busy: it fits only where the small pods were packed into
    one half of a GPU; a refusal names what is in the way
- submit: train
  gpumem-percentage: 50
- finish: whole
- note: >-
    half a GPU again, with `whole` gone: a free instance in the way may be destroyed to make room;
    an instance in use never is
- submit: train-2
  gpumem-percentage: 50
- note: requests no GPU here can serve are refused at once with the reason, and nothing is touched
- submit: wrong-mode
  gpumem: 4000
  mode: hami-core
- submit: huge
  gpumem: 100000
- finish: infer-a
- note: another small pod while infer-a's 1g.10gb is free; each policy decides whether to reuse it
- submit: infer-c
  gpumem: 8000
- note: the agent restarts and rebuilds its state from NVML and the pod annotations alone
- restart-agent: {}
- submit: infer-d
  gpumem: 4000
- note: a pod that ends leaves its instance free; the next pod of that size gets it with no NVML operation
- delete: embed
- submit: embed-2
  gpumem: 15000
"""


_KEYS = (("gpu", "nvidia.com/gpu"), ("gpumem", "nvidia.com/gpumem"),
         ("gpumem-percentage", "nvidia.com/gpumem-percentage"), ("gpucores", "nvidia.com/gpucores"))


_ALLOWED_KEYS: dict[str, set[str]] = {"submit": {"submit", "mode", *(k for k, _ in _KEYS)}}


def _int(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}.{key}", value, "a whole number")
    return value


def parse_scenario(text: str, source: str = "scenario") -> Scenario:
    doc = load_yaml(text, source)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("steps"), list):
        raise InputError(source, type(doc).__name__, "a mapping with a `steps:` list")
    steps: list[Step] = []
    submitted: set[str] = set()
    for n, raw in enumerate(doc["steps"]):
        where = f"steps[{n}]"
        if not isinstance(raw, Mapping):
            raise InputError(where, raw, f"a mapping whose first key is one of {', '.join(ACTIONS)}")
        action = next((a for a in ACTIONS if a in raw), None)
        if action is None:
            raise InputError(where, dict(raw), f"one of the actions {', '.join(ACTIONS)}")
        allowed = _ALLOWED_KEYS.get(action, {action})
        unknown = sorted(set(map(str, raw)) - allowed)
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", raw[unknown[0]],
                             f"a {action} step takes only: {', '.join(sorted(allowed))}")
        if action == "note":
            steps.append(Step("note", text=str(raw["note"])))
            continue
        if action.startswith("restart"):
            steps.append(Step(action))
            continue
        pod = raw[action]
        if not isinstance(pod, str) or not pod:
            raise InputError(f"{where}.{action}", pod, "a pod name")
        if action != "submit":
            if pod not in submitted:
                raise InputError(f"{where}.{action}", pod, "the name of a pod submitted in an earlier step")
            steps.append(Step(action, pod))
            continue
        if pod in submitted:
            raise InputError(f"{where}.submit", pod, "a pod name not used before in this scenario")
        submitted.add(pod)
        limits: dict[str, int] = {}
        for key, resource in _KEYS:
            if key in raw:
                limits[resource] = _int(raw, key, where)
        limits.setdefault("nvidia.com/gpu", 1)
        annotations = {"nvidia.com/vgpu-mode": str(raw["mode"])} if "mode" in raw else {}
        steps.append(Step("submit", pod, limits, annotations))
    sim = doc.get("sim_gpus", "A100-SXM4-80GB:2")
    if not isinstance(sim, str):
        raise InputError(f"{source}.sim_gpus", sim, "a spec such as 'A100-SXM4-80GB:2'")
    return Scenario(str(doc.get("name", source)), sim, tuple(steps))


def default_scenario() -> Scenario:
    return parse_scenario(DEFAULT_SCENARIO, "embedded default scenario")
