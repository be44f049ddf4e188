"""charts/hami-mig with scheduler.enabled: valid Kubernetes, and every piece agrees with the extender's code
(its CLI, its routes, its RBAC constant) and with kube-scheduler's extender configuration."""

from __future__ import annotations

import base64
import copy
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from hami_mig.scheduler.api import SCHEDULER_RBAC_PERMISSIONS
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import StaticSource
from tests.deploy.chartutil import CHART_DIR, NAMESPACE, Manifest, kinds, only
from tests.deploy.test_chart_rbac import rbac_problems
from tests.deploy.test_chart_render import _validate

Render = Callable[..., list[Manifest]]
ON = {"scheduler": {"enabled": True}}
VARIANTS: dict[str, dict[str, Any]] = {
    "generated-cert": ON,
    "cert-manager": {"scheduler": {"enabled": True, "webhook": {"certManager": {"enabled": True}}}},
    "cert-manager-issuer": {"scheduler": {"enabled": True, "webhook": {"certManager": {
        "enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}},
    "own-secret": {"scheduler": {"enabled": True, "webhook": {"tls": {"secretName": "my-tls"},
                                                               "caBundle": "Y2E="}}},
    "no-webhook": {"scheduler": {"enabled": True, "webhook": {"enabled": False}}},
    "tuned": {"agent": {"policy": "best-fit", "geometries": "any"},
              "scheduler": {"enabled": True, "name": "gpu-scheduler", "replicas": 2,
                            "extender": {"port": 9443, "score": "spread", "lockTimeoutSeconds": 60,
                                         "lockWaitSeconds": 2.5, "logLevel": "debug", "extraArgs": ["--cache-ttl=2"]},
                            "webhook": {"failurePolicy": "Fail", "excludeNamespaces": ["kube-system", "monitoring"]},
                            "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                                             "effect": "NoSchedule"}]}},
}
CERT_MANAGER = "cert-manager.io/"


def containers(objects: list[Manifest]) -> dict[str, Manifest]:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def extender_args(objects: list[Manifest]) -> list[str]:
    args: list[str] = containers(objects)["extender"]["args"]
    return args


def scheduler_config(objects: list[Manifest]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(only(objects, "ConfigMap", "-scheduler")["data"]["config.yaml"])
    return config


def test_disabled_by_default(render: Render) -> None:
    objects = render()
    assert not [o for o in objects if o["metadata"]["name"].endswith("-scheduler")
                or o["kind"] in ("Deployment", "MutatingWebhookConfiguration")]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_kubernetes(render: Render, kv: Any, variant: str) -> None:
    objects = render(VARIANTS[variant])
    for obj in objects:
        if obj["apiVersion"].startswith(CERT_MANAGER):
            assert obj["kind"] in ("Issuer", "Certificate") and obj["spec"]
            continue
        _validate(kv, obj, kv.latest_version())
        _validate(kv, obj, "1.26")
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "hami-mig"
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}:
            assert obj["metadata"]["namespace"]


def test_objects_rendered(render: Render) -> None:
    extra = sorted(set(kinds(render(ON))) - set(kinds(render())))
    assert extra == ["Deployment", "MutatingWebhookConfiguration", "Role", "RoleBinding", "Secret"]
    assert kinds(render(VARIANTS["cert-manager"])).count("Certificate") == 1
    assert "Issuer" not in kinds(render(VARIANTS["cert-manager-issuer"]))
    no_webhook = render(VARIANTS["no-webhook"])
    assert not {"MutatingWebhookConfiguration", "Secret"} & set(kinds(no_webhook))
    assert "--cert=/etc/hami-mig/tls/tls.crt" not in extender_args(no_webhook)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_extender_accepts_its_command_line(render: Render, variant: str) -> None:
    from hami_mig.cli import build_parser

    objects = render(VARIANTS[variant])
    try:
        parsed = build_parser().parse_args(extender_args(objects))
    except SystemExit as exc:
        pytest.fail(f"hami-mig rejects the chart's extender arguments: exit {exc.code}")
    values = VARIANTS[variant]
    s = values["scheduler"]
    agent = values.get("agent", {})
    assert parsed.command == "scheduler"
    assert parsed.port == s.get("extender", {}).get("port", 8443)
    assert parsed.policy == agent.get("policy", "hami") and parsed.geometries == agent.get("geometries", "config")
    assert parsed.scheduler_name == s.get("name", "hami-scheduler")
    assert parsed.score == s.get("extender", {}).get("score", "binpack")
    assert parsed.device_config == "/etc/hami-mig/device-config.yaml"
    assert (parsed.cert is not None) == (s.get("webhook", {}).get("enabled", True))


def test_kube_scheduler_configuration_names_the_extender(render: Render) -> None:
    for variant in ("generated-cert", "tuned", "no-webhook"):
        objects = render(VARIANTS[variant])
        config = scheduler_config(objects)
        assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
        assert config["kind"] == "KubeSchedulerConfiguration"
        args = build_args(objects)
        assert [p["schedulerName"] for p in config["profiles"]] == [args.scheduler_name]
        (ext,) = config["extenders"]
        tls = args.cert is not None
        assert ext["urlPrefix"] == f"{'https' if tls else 'http'}://127.0.0.1:{args.port}"
        assert ext["enableHTTPS"] is tls
        # The verbs are the extender's routes.
        server = ExtenderServer(Extender(SchedulerConfig(), StaticSource()))
        server.stop()
        for verb in ("filterVerb", "prioritizeVerb", "bindVerb"):
            assert "/" + ext[verb] in server.routes
        assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False
        assert {r["name"] for r in ext["managedResources"]} == {
            "nvidia.com/gpu", "nvidia.com/gpumem", "nvidia.com/gpumem-percentage", "nvidia.com/gpucores"}
        assert all(r["ignoredByScheduler"] for r in ext["managedResources"])
        assert config["leaderElection"]["resourceName"] == only(objects, "Role")["rules"][1]["resourceNames"][0]
        assert "--config=/etc/kube-scheduler/config.yaml" in containers(objects)["kube-scheduler"]["command"]


def build_args(objects: list[Manifest]) -> Any:
    from hami_mig.cli import build_parser

    return build_parser().parse_args(extender_args(objects))


def test_cluster_role_grants_exactly_the_extenders_calls(render: Render) -> None:
    role = next(o for o in render(ON) if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-scheduler"))
    assert rbac_problems(role["rules"], SCHEDULER_RBAC_PERMISSIONS) == []
    objects = render(ON)
    account = only(objects, "ServiceAccount", "-scheduler")["metadata"]["name"]
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account
    bound = {b["roleRef"]["name"] for b in objects if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and b["subjects"][0]["name"] == account}
    assert bound == {role["metadata"]["name"], "system:kube-scheduler", "system:volume-scheduler",
                     "extension-apiserver-authentication-reader"}


def test_scheduler_pods_are_not_selected_by_the_agents_objects(render: Render) -> None:
    objects = render(ON)
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    agent_selector = only(objects, "DaemonSet")["spec"]["selector"]["matchLabels"]
    metrics_selector = only(objects, "Service", "-metrics")["spec"]["selector"]
    assert not agent_selector.items() <= pod_labels.items()
    assert not metrics_selector.items() <= pod_labels.items()
    webhook_service = only(objects, "Service", "-scheduler")
    assert webhook_service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"] for p in containers(objects)["extender"]["ports"]}
    assert webhook_service["spec"]["ports"][0]["targetPort"] in ports


def test_deployment_mounts_what_the_flags_name(render: Render) -> None:
    objects = render(ON)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
    assert set(mounts.values()) == set(volumes)
    assert volumes[mounts["/etc/hami-mig/device-config.yaml"]]["configMap"]["name"] == \
        only(objects, "ConfigMap", "-device-config")["metadata"]["name"]
    assert volumes[mounts["/etc/hami-mig/tls"]]["secret"]["secretName"] == only(objects, "Secret")["metadata"]["name"]
    assert volumes[mounts["/etc/kube-scheduler"]]["configMap"]["name"] == \
        only(objects, "ConfigMap", "-scheduler")["metadata"]["name"]


def test_webhook_configuration(render: Render) -> None:
    objects = render(VARIANTS["tuned"])
    (hook,) = only(objects, "MutatingWebhookConfiguration")["webhooks"]
    service = only(objects, "Service", "-scheduler")
    ref = hook["clientConfig"]["service"]
    assert (ref["name"], ref["namespace"], ref["port"]) == (service["metadata"]["name"], NAMESPACE,
                                                            service["spec"]["ports"][0]["port"])
    assert ref["path"] == "/webhook"
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"]
    assert excluded == ["kube-system", "monitoring"]  # the release namespace (kube-system) only once
    cm = render(VARIANTS["cert-manager"])
    annotations = only(cm, "MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{only(cm, 'Certificate')['metadata']['name']}"
    assert "caBundle" not in only(cm, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
    assert only(cm, "Certificate")["spec"]["secretName"] == \
        containers_secret(cm)
    own = only(render(VARIANTS["own-secret"]), "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
    assert own["caBundle"] == "Y2E="


def containers_secret(objects: list[Manifest]) -> str:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    name: str = next(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
    return name


def test_own_secret_needs_its_ca_bundle(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmError, match=r"scheduler\.webhook\.caBundle"):
        chart.render({"scheduler": {"enabled": True, "webhook": {"tls": {"secretName": "x"}}}}, name="x")


def test_schema_rejects_bad_scheduler_values(chart: Any, helm: Any) -> None:
    for values, message in (
        ({"scheduler": {"extender": {"score": "random"}}}, "/scheduler/extender/score"),
        ({"scheduler": {"webhook": {"failurePolicy": "Maybe"}}}, "/scheduler/webhook/failurePolicy"),
        ({"scheduler": {"enabled": True, "replicas": 0}}, "/scheduler/replicas"),
        ({"scheduler": {"nmae": "x"}}, "additional properties 'nmae' not allowed"),
    ):
        with pytest.raises(helm.HelmValuesError, match=message):
            chart.render(copy.deepcopy(values), name="hami-mig", namespace=NAMESPACE)


def test_helm_lint_is_clean_with_the_scheduler(helm: Any) -> None:
    for values in (ON, VARIANTS["tuned"], VARIANTS["cert-manager"]):
        report = helm.lint(str(CHART_DIR), copy.deepcopy(values), strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_generated_certificate_serves_the_webhook_service_name(render: Render, tmp_path: Path) -> None:
    """The API server calls https://<service>.<namespace>.svc/webhook trusting caBundle: the extender, given the
    chart's Secret, passes that check."""
    objects = render(ON)
    secret = only(objects, "Secret")["data"]
    (hook,) = only(objects, "MutatingWebhookConfiguration")["webhooks"]
    cert, key, ca = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    cert.write_bytes(base64.b64decode(secret["tls.crt"]))
    key.write_bytes(base64.b64decode(secret["tls.key"]))
    ca.write_bytes(base64.b64decode(hook["clientConfig"]["caBundle"]))
    ref = hook["clientConfig"]["service"]
    host = f"{ref['name']}.{ref['namespace']}.svc"
    with ExtenderServer(Extender(SchedulerConfig(), StaticSource()), cert=str(cert), key=str(key)) as server:
        context = ssl.create_default_context(cafile=str(ca))
        pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port, ssl_context=context, server_hostname=host,
                                           assert_hostname=host, retries=False)
        assert pool.request("GET", "/healthz").data == b"ok"
    if shutil.which("openssl"):
        check = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_register_format_value_becomes_the_agents_flag(render: Render) -> None:
    """agent.hamiRegisterFormat: json (the default) adds nothing; legacy reaches the agent, whose parser takes it."""
    from hami_mig.cli import build_parser
    from hami_mig.cli.device_plugin import build_config
    from tests.deploy.chartutil import args_of

    assert "--hami-register-format" not in args_of(render())
    flag = args_of(render({"agent": {"hamiRegisterFormat": "legacy"}}))["--hami-register-format"]
    assert flag == "legacy"
    args = build_parser().parse_args(["device-plugin", "--node-name", "n", f"--hami-register-format={flag}"])
    assert build_config(args).register_format == "legacy"
