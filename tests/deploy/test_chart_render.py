"""charts/hami-mig rendered by Helm: every variant is valid Kubernetes, and says what the agent needs."""

from __future__ import annotations

import copy
import importlib
import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hami_mig import cli
from hami_mig.cli import device_plugin
from hami_mig.kube import nodeconfig
from tests.deploy.chartutil import (
    CHART_DIR,
    NAMESPACE,
    REPO_ROOT,
    Manifest,
    agent_container,
    args_of,
    container_args,
    kinds,
    merged_values,
    only,
)

Render = Callable[..., list[Manifest]]

# Named value sets the tests render; each must pass Helm's schema check and Kubernetes' schemas.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "best-fit-any": {"agent": {"policy": "best-fit", "geometries": "any", "logLevel": "debug"}},
    "cdi": {"cdi": {"enabled": True}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    "dashboard": {"dashboard": {"enabled": True, "namespace": "monitoring"}},
    "minimal-capabilities": {"securityContext": {"privileged": False}, "runtimeClassName": "nvidia"},
    "sim-demo": {"agent": {"backend": "sim", "simGpus": "A100-SXM4-40GB:2", "simState": "/var/lib/hami-mig/sim.json"}},
    "no-host-network": {"hostNetwork": False, "metrics": {"hostPort": 31993, "service": {"headless": False}}},
    "metrics-on-loopback": {"metrics": {"host": "127.0.0.1"}},
    "existing-configmaps": {
        "deviceConfig": {"create": False, "existingConfigMap": "hami-scheduler-device"},
        "nodeConfig": {"create": False, "existingConfigMap": "hami-device-plugin"},
    },
    "everything": {
        "agent": {"policy": "best-fit", "reconcileIntervalSeconds": 10, "allocateTimeoutSeconds": 12.5,
                  "events": False, "extraArgs": ["--metrics-host=0.0.0.0"],
                  "extraEnv": [{"name": "PYTHONFAULTHANDLER", "value": "1"}]},
        "cdi": {"enabled": True, "dir": "/etc/cdi"},
        "metrics": {"serviceMonitor": {"enabled": True}, "legacyNames": False},
        "dashboard": {"enabled": True},
        "nodeConfig": {"defaultMode": "hami-core",
                       "nodes": [{"name": "gpu-1"}, {"name": "gpu-2", "operatingmode": "mig"}]},
        "priorityClassName": "",
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"example.com/team": "ml"},
    },
    # Every agent flag the chart has a value for, switched away from its default at once.
    "all-agent-flags": {
        "agent": {"stateDir": "/var/lib/hami-mig-journal", "manageMigMode": True, "ignoreGpuOperator": True,
                  "idleReleaseSeconds": 900, "reconcileIntervalSeconds": 15, "allocateTimeoutSeconds": 20,
                  "nvmlResyncIntervalSeconds": 0, "events": False, "policy": "best-fit", "geometries": "any",
                  "logLevel": "warning", "metricsPort": 9400, "kubeletDir": "/var/lib/k8s/device-plugins"},
        "cdi": {"enabled": True, "dir": "/etc/cdi", "baseSpec": "/var/run/cdi/nvidia.yaml"},
        "metrics": {"legacyNames": False, "v29Names": False},
        "nodeConfig": {"defaultMode": "hami-core"},
    },
    # nvidia-ctk's spec in the directory the agent writes to: no second mount.
    "cdi-base-spec-in-cdi-dir": {"cdi": {"enabled": True, "baseSpec": "/var/run/cdi/nvidia.yaml"},
                                 "agent": {"idleReleaseSeconds": 0.5}},
}


# ---------------------------------------------------------------------------------------------------------------------
# Every variant is valid Kubernetes (strict: unknown fields are errors), for the newest and the oldest supported API.
# ---------------------------------------------------------------------------------------------------------------------

OLDEST_KUBERNETES = "1.26"  # Chart.yaml kubeVersion >=1.26


@pytest.fixture(scope="module")
def kv() -> Any:
    """kubernetes_validate.utils: Kubernetes' OpenAPI schemas (strict variants) as JSON Schema."""
    return importlib.import_module("kubernetes_validate.utils")  # a declared test dependency


def _validate(kv: Any, obj: Manifest, version: str) -> None:
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        pytest.fail(f"{name} invalid for Kubernetes {version} at {where}: {exc.message}")


def _validate_service_monitor(sm: Manifest, objects: list[Manifest]) -> None:
    """No OpenAPI schema ships for the CRD: check what the Prometheus Operator needs to find the agents."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    service = only(objects, "Service", "-metrics")
    labels = service["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items(), "ServiceMonitor selects no Service"
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                                 "relabelings", "metricRelabelings"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(render: Render, kv: Any, variant: str) -> None:
    objects = render(VARIANTS[variant])
    assert objects, "nothing rendered"
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            _validate_service_monitor(obj, objects)
            continue
        _validate(kv, obj, kv.latest_version())
        _validate(kv, obj, OLDEST_KUBERNETES)
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "hami-mig"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"], f"{obj['kind']} without a namespace"


def test_strict_validation_catches_a_misspelt_field(render: Render, kv: Any) -> None:
    """The check above would catch a template typo: a misspelt DaemonSet field fails strict validation."""
    daemonset = copy.deepcopy(only(render(), "DaemonSet"))
    daemonset["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"periodSeconds": 1}
    with pytest.raises(kv.ValidationError):
        kv.validate(daemonset, kv.latest_version(), strict=True)


# ---------------------------------------------------------------------------------------------------------------------
# What each variant renders.
# ---------------------------------------------------------------------------------------------------------------------


def test_default_objects(render: Render) -> None:
    objects = render()
    assert kinds(objects) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "DaemonSet", "Service",
                              "ServiceAccount"]


def test_default_daemonset(render: Render) -> None:
    objects = render()
    ds = only(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["hostPID"] is True
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items()

    c = agent_container(objects)
    assert c["image"] == "hami-mig:0.1.0"  # tag defaults to the chart's appVersion
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["securityContext"]["privileged"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NVIDIA_MIG_CONFIG_DEVICES"]["value"] == "all"

    assert args_of(objects) == {
        "--node-name": "$(NODE_NAME)",
        "--kubelet-dir": "/var/lib/kubelet/device-plugins",
        "--device-config": "/etc/hami-mig/device-config.yaml",
        "--node-config": "/etc/hami-mig/config.json",
        "--default-mode": "mig",
        "--backend": "nvml",
        "--policy": "hami",
        "--geometries": "config",
        "--metrics-port": "31993",
        "--mig-minors": "/host/proc/driver/nvidia-caps/mig-minors",
        "--state-dir": "/var/lib/hami-mig",
        "--log-level": "info",
    }

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 31993}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def _mounts(objects: list[Manifest]) -> dict[str, tuple[str, str | None, bool]]:
    """mountPath -> (volume name, hostPath or None, readOnly)."""
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    result = {}
    for m in agent_container(objects)["volumeMounts"]:
        volume = volumes[m["name"]]  # KeyError = a mount without a volume
        host = volume.get("hostPath", {}).get("path")
        result[m["mountPath"]] = (m["name"], host, bool(m.get("readOnly")))
    mounted = {m["name"] for m in agent_container(objects)["volumeMounts"]}
    assert mounted == set(volumes), f"volumes never mounted: {set(volumes) - mounted}"
    return result


def _volume(objects: list[Manifest], mount_path: str) -> Manifest:
    """The volume mounted at mount_path."""
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    name = next(m["name"] for m in agent_container(objects)["volumeMounts"] if m["mountPath"] == mount_path)
    volume: Manifest = next(v for v in pod["volumes"] if v["name"] == name)
    return volume


def _host_path_of(objects: list[Manifest], path: str) -> tuple[str, bool] | None:
    """(host path, read-only) of the file or directory `path` names in the container, through the deepest
    hostPath mount that contains it; None when no hostPath mount does."""
    best: tuple[str, str, bool] | None = None
    for mount_path, (_name, host, read_only) in _mounts(objects).items():
        root = mount_path.rstrip("/") or "/"
        inside = path == root or path.startswith(root.rstrip("/") + "/")
        if host is not None and inside and (best is None or len(root) > len(best[0])):
            best = (root, host, read_only)
    if best is None:
        return None
    root, host, read_only = best
    return posixpath.normpath(host.rstrip("/") + "/" + path[len(root):].lstrip("/")), read_only


def test_default_mounts(render: Render) -> None:
    objects = render()
    mounts = _mounts(objects)
    assert mounts["/var/lib/kubelet/device-plugins"][1:] == ("/var/lib/kubelet/device-plugins", False)
    assert mounts["/dev"][1:] == ("/dev", False)
    assert mounts["/host/proc/driver/nvidia"][1:] == ("/proc/driver/nvidia", True)
    assert mounts["/host/proc/driver/nvidia-caps"][1:] == ("/proc/driver/nvidia-caps", True)
    assert mounts["/etc/hami-mig"][2] is True
    # The allocate journal outlives the pod: a host directory, read-write, created if missing.
    assert mounts["/var/lib/hami-mig"][1:] == ("/var/lib/hami-mig", False)
    assert _volume(objects, "/var/lib/hami-mig")["hostPath"]["type"] == "DirectoryOrCreate"
    assert not any(path.startswith("/proc") for path in mounts), "runc refuses mounts under /proc"
    assert "/var/run/cdi" not in mounts

    # The files the flags name are the ConfigMaps' keys, projected into /etc/hami-mig.
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    config = next(v for v in pod["volumes"] if v["name"] == mounts["/etc/hami-mig"][0])
    projected = {s["configMap"]["name"]: [i["path"] for i in s["configMap"]["items"]]
                 for s in config["projected"]["sources"]}
    device_cm = only(objects, "ConfigMap", "-device-config")
    node_cm = only(objects, "ConfigMap", "-node-config")
    assert projected == {device_cm["metadata"]["name"]: ["device-config.yaml"],
                         node_cm["metadata"]["name"]: ["config.json"]}
    assert "device-config.yaml" in device_cm["data"] and "config.json" in node_cm["data"]


# `hami-mig device-plugin` options the chart deliberately sets from no value: the downward API, the in-cluster
# service account, fixed paths of the mounted ConfigMaps, the default bind address (extraArgs can change it), and
# --proc-root: hostPID makes the container's own /proc the host's process table, so the default is right.
NOT_FROM_VALUES = {"command", "func", "node_name", "kubeconfig", "device_config", "node_config", "proc_root"}
MIG_MINORS = "/host/proc/driver/nvidia-caps/mig-minors"


def expected_options(overrides: dict[str, Any]) -> dict[str, Any]:
    """What the agent's parser must produce from the chart rendered with `overrides`, derived from the values."""
    values = merged_values(overrides)
    agent, cdi, metrics = values["agent"], values["cdi"], values["metrics"]
    sim = agent["backend"] == "sim"
    return {
        "log_level": agent["logLevel"],
        "kubelet_dir": agent["kubeletDir"],
        "default_mode": values["nodeConfig"]["defaultMode"],
        "backend": agent["backend"],
        "sim_gpus": (agent["simGpus"] or None) if sim else None,
        "sim_state": (agent["simState"] or None) if sim else None,
        "policy": agent["policy"],
        "geometries": agent["geometries"],
        "metrics_port": agent["metricsPort"],
        "metrics_host": metrics["host"] or "0.0.0.0",
        "cdi": cdi["enabled"],
        "cdi_dir": cdi["dir"] if cdi["enabled"] else "/var/run/cdi",
        "cdi_base_spec": cdi["baseSpec"] if cdi["enabled"] else "",
        # The chart mounts the host's /proc/driver/nvidia-caps for the nvml backend only.
        "mig_minors": "/proc/driver/nvidia-caps/mig-minors" if sim else MIG_MINORS,
        "state_dir": agent["stateDir"],
        "manage_mig_mode": agent["manageMigMode"],
        "ignore_gpu_operator": agent["ignoreGpuOperator"],
        "idle_release_seconds": float(agent["idleReleaseSeconds"]),
        "reconcile_interval": float(agent["reconcileIntervalSeconds"] or 30.0),
        "nvml_resync_interval": float(30.0 if agent["nvmlResyncIntervalSeconds"] is None
                                      else agent["nvmlResyncIntervalSeconds"]),
        "allocate_timeout": float(agent["allocateTimeoutSeconds"] or 30.0),
        "no_events": not agent["events"],
        "no_legacy_metrics": not metrics["legacyNames"],
        "no_v29_metrics": not metrics["v29Names"],
        "hami_register_format": agent["hamiRegisterFormat"],
    }


def _parse_rendered(objects: list[Manifest]) -> Any:
    env = {e["name"]: e.get("value", "") for e in agent_container(objects)["env"]}
    env["NODE_NAME"] = "gpu-node-1"  # what the downward API gives; the kubelet expands $(NODE_NAME)
    args = [a.replace("$(NODE_NAME)", env["NODE_NAME"]) for a in container_args(objects)]
    try:
        return cli.build_parser().parse_args(args)
    except SystemExit as exc:  # argparse reports an unknown flag or a bad choice this way
        pytest.fail(f"hami-mig rejects the chart's arguments {args}: exit {exc.code}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_agent_accepts_the_rendered_command_line(render: Render, variant: str) -> None:
    """The DaemonSet's args parse with the agent's own CLI parser (ENTRYPOINT ["hami-mig"] + args), and every
    option comes out as the values say."""
    parsed = _parse_rendered(render(VARIANTS[variant]))
    assert parsed.command == "device-plugin"
    assert parsed.node_name == "gpu-node-1"
    assert parsed.device_config == "/etc/hami-mig/device-config.yaml"
    assert parsed.node_config == "/etc/hami-mig/config.json"
    assert parsed.proc_root == "/proc"
    expected = expected_options(VARIANTS[variant])
    got = {key: getattr(parsed, key) for key in expected}
    assert got == expected


def test_every_agent_option_is_set_from_a_value_or_deliberately_not() -> None:
    """A flag added to `hami-mig device-plugin` fails here until the chart wires it (or lists it above)."""
    options = set(vars(cli.build_parser().parse_args(["device-plugin"])))
    assert options - NOT_FROM_VALUES == set(expected_options({}))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_rendered_command_line_builds_the_agent_config(render: Render, variant: str, tmp_path: Path) -> None:
    """Past argparse: the agent's own build_config accepts the rendered flags and ConfigMaps."""
    objects = render(VARIANTS[variant])
    parsed = _parse_rendered(objects)
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for attr, key in (("device_config", "device-config.yaml"), ("node_config", "config.json")):
        found = [cm["data"][key] for cm in configmaps.values() if key in cm.get("data", {})]
        if found:
            (tmp_path / key).write_text(found[0], encoding="utf-8")
            setattr(parsed, attr, str(tmp_path / key))
        else:  # existingConfigMap: not rendered, so the agent's defaults stand in
            setattr(parsed, attr, None)
    config = device_plugin.build_config(parsed)
    values = merged_values(VARIANTS[variant])
    assert config.state_dir == values["agent"]["stateDir"]
    assert config.manage_mig_mode is values["agent"]["manageMigMode"]
    assert config.ignore_gpu_operator is values["agent"]["ignoreGpuOperator"]
    assert config.idle_release_s == float(values["agent"]["idleReleaseSeconds"])
    assert config.cdi is values["cdi"]["enabled"]
    assert (config.cdi_dir, config.cdi_base_spec) == (parsed.cdi_dir, parsed.cdi_base_spec)
    assert (config.mig_minors_path, config.proc_root) == (parsed.mig_minors, "/proc")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_paths_the_flags_name_are_mounted_from_the_host(render: Render, variant: str) -> None:
    """Each host path a flag names is visible in the container, read-write where the agent writes."""
    objects = render(VARIANTS[variant])
    parsed = _parse_rendered(objects)
    assert _host_path_of(objects, parsed.state_dir) == (parsed.state_dir, False), "journal: hostPath, read-write"
    assert _host_path_of(objects, parsed.kubelet_dir) == (parsed.kubelet_dir, False)
    if parsed.backend == "nvml":
        assert _host_path_of(objects, parsed.mig_minors) == ("/proc/driver/nvidia-caps/mig-minors", True)
    if parsed.cdi:
        assert _host_path_of(objects, parsed.cdi_dir.rstrip("/")) == (parsed.cdi_dir.rstrip("/"), False)
    if parsed.cdi_base_spec:
        host, _read_only = _host_path_of(objects, parsed.cdi_base_spec) or ("", False)
        assert host == parsed.cdi_base_spec


def test_policy_geometries_and_log_level_reach_the_agent(render: Render) -> None:
    args = args_of(render(VARIANTS["best-fit-any"]))
    assert (args["--policy"], args["--geometries"], args["--log-level"]) == ("best-fit", "any", "debug")


def test_cdi_mounts_the_spec_directory_and_passes_the_flags(render: Render) -> None:
    objects = render(VARIANTS["cdi"])
    args = args_of(objects)
    assert "--cdi" in args and args["--cdi"] is None
    assert args["--cdi-dir"] == "/var/run/cdi"
    assert "--cdi-base-spec" not in args
    assert _mounts(objects)["/var/run/cdi"][1:] == ("/var/run/cdi", False)
    assert not {"--cdi", "--cdi-dir", "--cdi-base-spec"} & set(args_of(render()))

    custom = render({"cdi": {"enabled": True, "dir": "/etc/cdi"}})
    assert _mounts(custom)["/etc/cdi"][1] == "/etc/cdi"
    assert args_of(custom)["--cdi-dir"] == "/etc/cdi"


def test_cdi_base_spec_directory_is_mounted_read_only(render: Render) -> None:
    objects = render(VARIANTS["all-agent-flags"])
    args = args_of(objects)
    assert (args["--cdi-dir"], args["--cdi-base-spec"]) == ("/etc/cdi", "/var/run/cdi/nvidia.yaml")
    mounts = _mounts(objects)
    assert mounts["/etc/cdi"][1:] == ("/etc/cdi", False)
    assert mounts["/var/run/cdi"][1:] == ("/var/run/cdi", True)
    assert _volume(objects, "/var/run/cdi")["hostPath"]["type"] == "Directory"

    # In the directory the agent writes to: that read-write mount already shows it.
    same = render(VARIANTS["cdi-base-spec-in-cdi-dir"])
    assert args_of(same)["--cdi-base-spec"] == "/var/run/cdi/nvidia.yaml"
    assert _mounts(same)["/var/run/cdi"][1:] == ("/var/run/cdi", False)
    assert [m for m in agent_container(same)["volumeMounts"] if m["name"] == "cdi-base-spec"] == []

    # Without cdi.enabled the agent writes no spec, so the base spec is neither passed nor mounted.
    off = render({"cdi": {"baseSpec": "/etc/cdi/nvidia.yaml"}})
    assert not {"--cdi", "--cdi-dir", "--cdi-base-spec"} & set(args_of(off))
    assert "/etc/cdi" not in _mounts(off)


def test_state_dir_is_a_host_directory(render: Render) -> None:
    objects = render({"agent": {"stateDir": "/var/lib/hami-mig-journal"}})
    assert args_of(objects)["--state-dir"] == "/var/lib/hami-mig-journal"
    assert _mounts(objects)["/var/lib/hami-mig-journal"][1:] == ("/var/lib/hami-mig-journal", False)
    volume = _volume(objects, "/var/lib/hami-mig-journal")
    assert volume["hostPath"] == {"path": "/var/lib/hami-mig-journal", "type": "DirectoryOrCreate"}
    assert "emptyDir" not in volume


def test_mig_minors_come_from_the_mounted_host_table(render: Render) -> None:
    objects = render()
    assert args_of(objects)["--mig-minors"] == MIG_MINORS
    assert _host_path_of(objects, MIG_MINORS) == ("/proc/driver/nvidia-caps/mig-minors", True)
    # No host /proc is mounted anywhere (hostPID gives the host's process table): no --proc-root.
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert not [v for v in pod["volumes"] if v.get("hostPath", {}).get("path") == "/proc"]
    assert "--proc-root" not in args_of(objects)
    # The simulator has no driver procfs: the agent keeps its default.
    assert "--mig-minors" not in args_of(render(VARIANTS["sim-demo"]))


@pytest.mark.parametrize(
    ("values", "flag", "value"),
    [
        ({"agent": {"manageMigMode": True}}, "--manage-mig-mode", None),
        ({"agent": {"ignoreGpuOperator": True}}, "--ignore-gpu-operator", None),
        ({"agent": {"idleReleaseSeconds": 600}}, "--idle-release-seconds", "600"),
        ({"agent": {"idleReleaseSeconds": 0.5}}, "--idle-release-seconds", "0.5"),
        ({"metrics": {"v29Names": False}}, "--no-v29-metrics", None),
    ],
)
def test_agent_toggles(render: Render, values: dict[str, Any], flag: str, value: str | None) -> None:
    args = args_of(render(values))
    assert flag in args and args[flag] == value
    assert flag not in args_of(render()), f"{flag} is not the default"


@pytest.mark.parametrize(
    "values",
    [
        {"agent": {"stateDir": "/var/lib/kubelet/device-plugins"}},
        {"agent": {"stateDir": "/tmp"}},
        {"cdi": {"enabled": True, "dir": "/var/lib/hami-mig/"}},
        {"cdi": {"enabled": True, "dir": "/etc/cdi", "baseSpec": "/var/lib/hami-mig/nvidia.yaml"}},
    ],
)
def test_colliding_mount_paths_fail_clearly(chart: Any, helm: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError, match=r"must be different directories"):
        chart.render(values, name="x")


def test_minimal_capabilities_mode(render: Render) -> None:
    objects = render(VARIANTS["minimal-capabilities"])
    c = agent_container(objects)
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "allowPrivilegeEscalation" not in sc  # false + CAP_SYS_ADMIN is rejected by the API server
    assert "/dev" not in _mounts(objects), "host /dev is only mounted for the privileged mode"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NVIDIA_MIG_CONFIG_DEVICES"] == "all" and env["NVIDIA_MIG_MONITOR_DEVICES"] == "all"
    assert only(objects, "DaemonSet")["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"


def test_sim_backend_needs_no_driver(render: Render) -> None:
    objects = render(VARIANTS["sim-demo"])
    args = args_of(objects)
    assert args["--backend"] == "sim"
    assert args["--sim-gpus"] == "A100-SXM4-40GB:2"
    assert args["--sim-state"] == "/var/lib/hami-mig/sim.json"
    assert not any(p.startswith("/host/proc") or p == "/dev" for p in _mounts(objects))
    assert not any(e["name"].startswith("NVIDIA_") for e in agent_container(objects)["env"])
    # The sim-only flags never reach a real node's agent.
    nvml = args_of(render({"agent": {"simGpus": "A100-SXM4-40GB:2"}}))
    assert "--sim-gpus" not in nvml


def test_optional_flags(render: Render) -> None:
    objects = render(VARIANTS["everything"])
    args = args_of(objects)
    assert args["--reconcile-interval"] == "10"
    assert args["--allocate-timeout"] == "12.5"
    assert "--no-events" in args and "--no-legacy-metrics" in args
    assert args["--default-mode"] == "hami-core"
    assert args["--metrics-host"] == "0.0.0.0"
    assert container_args(objects)[-1] == "--metrics-host=0.0.0.0"  # extra args last
    for flag in ("--reconcile-interval", "--nvml-resync-interval", "--allocate-timeout", "--no-events",
                 "--no-legacy-metrics", "--no-v29-metrics", "--manage-mig-mode", "--ignore-gpu-operator",
                 "--idle-release-seconds", "--cdi-base-spec", "--proc-root"):
        assert flag not in args_of(render())
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert "priorityClassName" not in pod
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"name": "PYTHONFAULTHANDLER", "value": "1"} in agent_container(objects)["env"]
    annotations = only(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "ml"


def test_config_changes_roll_the_daemonset(render: Render) -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        annotations = only(render(values), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums({})
    assert len(base) == 2
    device = checksums({"deviceConfig": {"deviceSplitCount": 7}})
    assert device["checksum/device-config"] != base["checksum/device-config"]
    assert device["checksum/node-config"] == base["checksum/node-config"]
    node = checksums({"nodeConfig": {"nodes": [{"name": "n"}]}})
    assert node["checksum/node-config"] != base["checksum/node-config"]


def test_host_network_off_keeps_node_port_via_host_port(render: Render) -> None:
    objects = render(VARIANTS["no-host-network"])
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is False and "dnsPolicy" not in pod
    assert agent_container(objects)["ports"][0]["hostPort"] == 31993
    assert only(objects, "Service")["spec"]["type"] == "ClusterIP"


def test_metrics_service(render: Render) -> None:
    objects = render()
    service = only(objects, "Service", "-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 31993, "targetPort": "metrics", "protocol": "TCP"}]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "31993"
    pod_labels = only(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    moved = render({"agent": {"metricsPort": 9400}})
    assert only(moved, "Service")["spec"]["ports"][0]["port"] == 9400
    assert args_of(moved)["--metrics-port"] == "9400"
    assert agent_container(moved)["ports"][0]["containerPort"] == 9400


def test_metrics_host(render: Render) -> None:
    """Every address by default (probes to the pod IP); a loopback address moves the probes there."""
    default = agent_container(render())
    assert "--metrics-host" not in args_of(render())
    assert "host" not in default["livenessProbe"]["httpGet"]
    local = render({"metrics": {"host": "127.0.0.1"}})
    assert args_of(local)["--metrics-host"] == "127.0.0.1"
    for probe in ("livenessProbe", "readinessProbe"):
        assert agent_container(local)[probe]["httpGet"]["host"] == "127.0.0.1"
    assert "host" not in agent_container(render({"metrics": {"host": "10.0.0.7"}}))["livenessProbe"]["httpGet"]


def test_loopback_metrics_without_host_network_fails_clearly(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmError, match=r"metrics\.host 127\.0\.0\.1 needs hostNetwork: true"):
        chart.render({"metrics": {"host": "127.0.0.1"}, "hostNetwork": False}, name="x")


def test_service_monitor_only_when_enabled(render: Render) -> None:
    assert not [o for o in render() if o["kind"] == "ServiceMonitor"]
    objects = render(VARIANTS["service-monitor"])
    sm = only(objects, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"][0]["interval"] == "30s"


def test_service_monitor_without_service_fails_clearly(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmError, match=r"needs metrics\.service\.enabled"):
        chart.render({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, name="x")


def test_existing_configmaps_are_used_not_created(render: Render) -> None:
    objects = render(VARIANTS["existing-configmaps"])
    assert not [o for o in objects if o["kind"] == "ConfigMap"]
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    names = [s["configMap"]["name"] for v in pod["volumes"] if "projected" in v for s in v["projected"]["sources"]]
    assert names == ["hami-scheduler-device", "hami-device-plugin"]


def test_missing_existing_configmap_name_fails_clearly(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmError, match=r"deviceConfig\.existingConfigMap is required"):
        chart.render({"deviceConfig": {"create": False}}, name="x")


def test_rbac_can_be_left_to_the_cluster_admin(render: Render) -> None:
    objects = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "gpu-agent"}})
    assert kinds(objects) == ["ConfigMap", "ConfigMap", "DaemonSet", "Service"]
    assert only(objects, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "gpu-agent"


def test_node_selector_and_tolerations_are_overridable(render: Render) -> None:
    # Helm merges maps: a user's nodeSelector adds to the default, null removes the default key.
    objects = render({"nodeSelector": {"nvidia.com/gpu.present": None, "gpu": "mig"}, "tolerations": []})
    pod = only(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "mig"}
    assert "tolerations" not in pod


def test_names_follow_the_release(chart: Any) -> None:
    from tests.deploy.chartutil import parse_manifests

    objects = parse_manifests(chart.render({}, name="gpu", namespace="gpu-system"))
    assert only(objects, "DaemonSet")["metadata"]["name"] == "gpu-hami-mig"
    assert {o["metadata"].get("namespace", "gpu-system") for o in objects} == {"gpu-system"}
    binding = only(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-hami-mig", "namespace": "gpu-system"}]
    assert binding["roleRef"]["name"] == only(objects, "ClusterRole")["metadata"]["name"]


def test_notes_render(render_raw: Callable[..., dict[str, str]]) -> None:
    notes = render_raw()["hami-mig/templates/NOTES.txt"]
    assert "curl http://<node-ip>:31993/metrics" in notes
    assert f"{NAMESPACE}/hami-mig" in notes
    assert "backend=sim" in render_raw(VARIANTS["sim-demo"])["hami-mig/templates/NOTES.txt"]


# ---------------------------------------------------------------------------------------------------------------------
# Node config.json
# ---------------------------------------------------------------------------------------------------------------------


def test_node_config_json(render: Render) -> None:
    default = json.loads(only(render(), "ConfigMap", "-node-config")["data"]["config.json"])
    assert default == {"nodeconfig": []}
    nodes = [
        {"name": "gpu-1"},
        {"name": "gpu-2", "operatingmode": "hami-core", "devicesplitcount": 4,
         "filterdevices": {"uuid": ["GPU-abc"], "index": [1]}},
    ]
    configmap = only(render({"nodeConfig": {"nodes": nodes}}), "ConfigMap", "-node-config")
    rendered = json.loads(configmap["data"]["config.json"])
    assert rendered == {"nodeconfig": [
        {"name": "gpu-1", "operatingmode": "mig"},  # nodeConfig.defaultMode
        {"name": "gpu-2", "operatingmode": "hami-core", "devicesplitcount": 4,
         "filterdevices": {"uuid": ["GPU-abc"], "index": [1]}},
    ]}


def test_node_config_is_accepted_by_the_agent_parser(render: Render) -> None:
    nodes = [{"name": "gpu-1"}, {"name": "gpu-2", "operatingmode": "mps", "devicesplitcount": 3}]
    text = only(render({"nodeConfig": {"nodes": nodes}}), "ConfigMap", "-node-config")["data"]["config.json"]
    parsed = nodeconfig.parse_node_configs(text)
    assert [(n.name, n.operating_mode, n.device_split_count) for n in parsed] == [("gpu-1", "mig", 10),
                                                                                  ("gpu-2", "mps", 3)]


# ---------------------------------------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------------------------------------

DASHBOARD_METRICS = (
    "nodeGPUMigInstance",
    "hami_mig_free_capacity",
    "hami_mig_allocate_duration_seconds_bucket",
    "hami_mig_reshape_operations_total",
    "hami_mig_nvml_errors_total",
)


def test_dashboard_configmap(render: Render) -> None:
    assert not [o for o in render() if o["metadata"]["name"].endswith("-dashboard")]
    cm = only(render(VARIANTS["dashboard"]), "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    shipped = json.loads((CHART_DIR / "dashboards" / "hami-mig.json").read_text(encoding="utf-8"))
    assert json.loads(cm["data"]["hami-mig.json"]) == shipped


def test_dashboard_panels_query_the_agent_metrics() -> None:
    dashboard = json.loads((CHART_DIR / "dashboards" / "hami-mig.json").read_text(encoding="utf-8"))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    exprs = []
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            exprs.append(target["expr"])
            assert target["datasource"]["uid"].strip("${}") in variables
            for var in ("$node",):
                if var in target["expr"]:
                    assert var[1:] in variables
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for metric in DASHBOARD_METRICS:
        assert any(metric in e for e in exprs), f"no panel queries {metric}"
    quantiles = [e for e in exprs if "histogram_quantile" in e and "hami_mig_allocate_duration_seconds_bucket" in e]
    assert len(quantiles) >= 3
    assert "__inputs" not in dashboard, "the sidecar loads dashboards as they are: no import placeholders"


def test_dashboard_metric_names_are_the_agents() -> None:
    """Each series the dashboard plots is one the agent's metrics code defines (catches a rename on either side)."""
    metrics_dir = REPO_ROOT / "hami_mig" / "metrics"
    source = "\n".join(p.read_text(encoding="utf-8") for p in sorted(metrics_dir.glob("*.py")))
    for metric in DASHBOARD_METRICS:
        family = metric.removesuffix("_bucket")
        assert f'"{family}"' in source, f"the dashboard queries {metric} but hami_mig/metrics defines no {family}"


# ---------------------------------------------------------------------------------------------------------------------
# values.yaml and values.schema.json
# ---------------------------------------------------------------------------------------------------------------------


def test_schema_is_draft_07_and_accepts_the_defaults(chart: Any) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    chart.validate_schema({})
    for values in VARIANTS.values():
        chart.validate_schema(copy.deepcopy(values))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"agent": {"policy": "worst-fit"}}, "at '/agent/policy': value must be one of 'hami', 'best-fit'"),
        ({"agent": {"metricsPort": 70000}}, "at '/agent/metricsPort': maximum: got 70,000, want 65,535"),
        ({"agent": {"metricsPort": 0}}, "at '/agent/metricsPort': minimum: got 0, want 1"),
        ({"agent": {"geometries": "all"}}, "at '/agent/geometries': value must be one of 'config', 'any'"),
        ({"agent": {"logLevel": "verbose"}}, "at '/agent/logLevel': value must be one of"),
        ({"agent": {"backend": "dcgm"}}, "at '/agent/backend': value must be one of 'nvml', 'sim'"),
        ({"deviceConfig": {"deviceSplitCount": 0}}, "at '/deviceConfig/deviceSplitCount': minimum: got 0, want 1"),
        ({"deviceConfig": {"deviceSplitCount": "10"}}, "at '/deviceConfig/deviceSplitCount': got string, want integer"),
        ({"nodeConfig": {"defaultMode": "MIG"}}, "at '/nodeConfig/defaultMode': value must be one of"),
        ({"nodeConfig": {"nodes": [{"operatingmode": "mig"}]}}, "at '/nodeConfig/nodes/0': missing property 'name'"),
        ({"securityContext": {"privileged": "yes"}}, "at '/securityContext/privileged': got string, want boolean"),
        ({"agent": {"polcy": "hami"}}, "additional properties 'polcy' not allowed"),
        ({"agent": {"idleReleaseSeconds": -1}}, "at '/agent/idleReleaseSeconds': minimum: got -1, want 0"),
        ({"agent": {"idleReleaseSeconds": "10m"}}, "at '/agent/idleReleaseSeconds': got string, want number"),
        ({"agent": {"stateDir": "var/lib/hami-mig"}}, "at '/agent/stateDir'"),
        ({"agent": {"stateDir": "/"}}, "at '/agent/stateDir'"),
        ({"agent": {"manageMigMode": "yes"}}, "at '/agent/manageMigMode': got string, want boolean"),
        ({"agent": {"ignoreGpuOperator": 1}}, "at '/agent/ignoreGpuOperator': got number, want boolean"),
        ({"cdi": {"baseSpec": "nvidia.yaml"}}, "at '/cdi/baseSpec'"),
        ({"cdi": {"baseSpec": "/nvidia.yaml"}}, "at '/cdi/baseSpec'"),
        ({"cdi": {"baseSpec": "/etc/cdi/"}}, "at '/cdi/baseSpec'"),
        ({"metrics": {"v29Names": "false"}}, "at '/metrics/v29Names': got string, want boolean"),
        ({"deviceConfig": {"extra": {"deviceSplitCount": 3}}},
         "at '/deviceConfig/extra/deviceSplitCount': false schema"),
        ({"deviceConfig": {"knownMigGeometries": [{"models": ["A30"], "allowedGeometries": [[{"name": "1g.6gb",
                                                                                          "memory": 6144}]]}]}},
         "missing property 'count'"),
    ],
)
def test_bad_values_fail_at_install_with_the_schema_message(chart: Any, helm: Any, values: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values, name="hami-mig", namespace=NAMESPACE)
    assert "values don't meet the specifications of the schema" in str(caught.value)
    assert message in str(caught.value)


def test_every_default_value_is_described_by_the_schema() -> None:
    """additionalProperties=false everywhere a typo could hide: every key in values.yaml is in the schema."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))

    def walk(node: Any, sch: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sch:
            return
        for key, value in node.items():
            assert key in sch["properties"], f"{path}{key} is not in values.schema.json"
            walk(value, sch["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


def test_helm_lint_is_clean(helm: Any) -> None:
    for values in ({}, VARIANTS["everything"], VARIANTS["minimal-capabilities"], VARIANTS["all-agent-flags"]):
        report = helm.lint(str(CHART_DIR), copy.deepcopy(values), strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        # Severity 1 (info) is only "icon is recommended"; warnings (2) and errors (3) fail.
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [], problems
