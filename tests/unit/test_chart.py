"""The Helm chart, rendered offline: lint, Kubernetes 1.36 schemas, values checks, RBAC shape,
security settings, and agreement with the `qmo run` flags and the generated files."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmo.cli import build_parser
from tests.support.chart import CHART, KUBE_VERSION, helm, helm_path, set_flags, template
from tests.support.kube import REPO

kubernetes_validate = pytest.importorskip("kubernetes_validate")

pytestmark = pytest.mark.skipif(helm_path() is None, reason="helm not built: run `make binaries`")

# The nearest schema version kubernetes-validate ships for the pinned 1.36.3 is 1.36.0.
SCHEMA_VERSION = "1.36.0"

VALUE_SETS = {
    "default values": {},
    "namespaced mode": {"watchNamespaces": "{team-a,team-b}"},
    "two replicas with a ServiceMonitor": {
        "replicaCount": "2",
        "metrics.serviceMonitor.enabled": "true",
        "metrics.serviceMonitor.labels.release": "prometheus",
    },
    "existing ServiceAccount, no RBAC, pinned digest": {
        "serviceAccount.create": "false",
        "serviceAccount.name": "platform-qmo",
        "rbac.create": "false",
        "image.digest": "sha256:" + "a" * 64,
        "imagePullSecrets[0].name": "ghcr-pull",
    },
    "the Grafana dashboard and the alert rules": {
        "dashboards.enabled": "true",
        "dashboards.annotations.grafana_folder": "qmo",
        "prometheusRule.enabled": "true",
        "prometheusRule.labels.release": "prometheus",
        "prometheusRule.additionalRuleLabels.team": "ml-platform",
    },
    "/metrics behind the API server's authn and authz, over TLS": {
        "metrics.auth.enabled": "true",
        "metrics.tls.secretName": "qmo-metrics-tls",
        "metrics.serviceMonitor.enabled": "true",
        "metrics.serviceMonitor.tlsConfig.serverName": "qmo-operator-metrics.qmo-system.svc",
    },
    "an S3 engine store with its node cache": {
        "engineStore.type": "s3",
        "engineStore.s3.bucket": "qmo-artifacts",
        "engineStore.s3.endpoint": "https://minio.storage:9000",
        "engineStore.s3.pathStyle": "true",
        "engineStore.s3.credentialsSecret": "s3-keys",
        "engineStore.gc.delete": "true",
    },
    "a NetworkPolicy for the operator, narrowed": {
        "networkPolicy.enabled": "true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name": "monitoring",
        "networkPolicy.apiServer[0].ipBlock.cidr": "10.0.0.1/32",
    },
}
# Prometheus Operator CRDs, not core Kubernetes.
KINDS_WITHOUT_SCHEMA = {"ServiceMonitor", "PrometheusRule"}
SIDECAR_LABEL = "grafana_dashboard"


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_passes_strictly(values: dict[str, str]) -> None:
    result = helm(
        "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *set_flags(values),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_manifest_is_valid_for_kubernetes_1_36(values: dict[str, str]) -> None:
    rendered = template(values)
    checked = 0
    for doc in rendered.docs:
        if doc["kind"] in KINDS_WITHOUT_SCHEMA:
            continue
        kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        checked += 1
    assert checked >= 3  # PDB, Service, Deployment at least


def test_the_chart_crds_are_the_generated_crds() -> None:
    comparison = filecmp.dircmp(REPO / "crds", CHART / "crds")
    assert comparison.left_only == comparison.right_only == []
    _, mismatch, errors = filecmp.cmpfiles(
        REPO / "crds", CHART / "crds", comparison.common_files, shallow=False
    )
    assert mismatch == errors == []
    assert len(comparison.common_files) == 2


@pytest.mark.parametrize("crd", sorted((REPO / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_the_crds_are_valid_for_kubernetes_1_36(crd: Path) -> None:
    import yaml

    kubernetes_validate.validate(yaml.safe_load(crd.read_text()), SCHEMA_VERSION, strict=True)


BAD_VALUES = [
    ({"replicas": "2"}, "additional properties 'replicas' not allowed"),
    ({"replicaCount": "-1"}, "/replicaCount"),
    ({"image.pullPolicy": "Sometimes"}, "'Always', 'IfNotPresent', 'Never'"),
    ({"image.repository": ""}, "/image/repository"),
    ({"image.digest": "latest"}, "/image/digest"),
    ({"watchNamespaces": "{Team_A}"}, "/watchNamespaces/0"),
    ({"watchNamespaces": "{a,a}"}, "/watchNamespaces"),
    ({"metrics.port": "70000"}, "/metrics/port"),
    ({"metrics.serviceMonitor.interval": "often"}, "/metrics/serviceMonitor/interval"),
    ({"podDisruptionBudget.maxUnavailable": "0"}, "/podDisruptionBudget/maxUnavailable"),
    (
        {"replicaCount": "2", "leaderElection.enabled": "false"},
        "every replica would reconcile the same models",
    ),
    ({"leaderElection.leaseDuration": "8"}, "must be greater than leaderElection.renewDeadline"),
    ({"leaderElection.retryPeriod": "10"}, "must be greater than leaderElection.retryPeriod"),
    ({"metrics.port": "8081"}, "metrics.port and health.port must differ"),
    (
        {"metrics.serviceMonitor.enabled": "true", "metrics.service.enabled": "false"},
        "needs metrics.service.enabled",
    ),
    ({"serviceAccount.create": "false"}, "serviceAccount.name is required"),
    ({"prometheusRule.additionalRuleLabels.team-name": "ml"}, "invalid propertyName 'team-name'"),
    ({"dashboards.namespace": "Monitoring"}, "/dashboards/namespace"),
]


@pytest.mark.parametrize(
    ("values", "message"),
    BAD_VALUES,
    ids=[
        "a misspelt key",
        "negative replicas",
        "an unknown pull policy",
        "an empty image repository",
        "a digest that is not sha256",
        "a namespace that is not a DNS label",
        "a namespace listed twice",
        "a port out of range",
        "a scrape interval that is not a duration",
        "a PDB that allows no disruption",
        "two replicas without leader election",
        "a lease shorter than the renew deadline",
        "a retry period longer than the renew deadline",
        "metrics and health on one port",
        "a ServiceMonitor without its Service",
        "an existing ServiceAccount without a name",
        "an alert label that is not a Prometheus label name",
        "a dashboard namespace that is not a DNS label",
    ],
)
def test_bad_values_fail_at_install_with_a_clear_message(
    values: dict[str, str], message: str
) -> None:
    result = helm("template", "qmo", str(CHART), *set_flags(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def _operator_args(rendered_values: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    deployment = template(rendered_values).one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return deployment, container["args"]


def test_the_deployment_args_are_flags_qmo_run_accepts() -> None:
    _, args = _operator_args({"watchNamespaces": "{team-a,team-b}", "verbose": "true"})
    parsed = build_parser().parse_args(["run", *args])
    assert parsed.namespace == ["team-a", "team-b"]
    assert parsed.leader_elect
    assert (parsed.lease_duration, parsed.renew_deadline, parsed.retry_period) == (15, 10, 2)
    assert (parsed.metrics_port, parsed.health_port, parsed.verbose) == (8080, 8081, True)


def test_the_lease_the_operator_uses_is_the_one_its_role_may_update() -> None:
    rendered = template({"leaderElection.leaseName": "qmo-leader"})
    args = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    lease = build_parser().parse_args(["run", *args]).lease_name
    role = rendered.one("Role", "qmo-operator-leader-election")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resourceNames": [lease],
        }
    ]


def test_the_operator_pod_runs_non_root_read_only_without_capabilities() -> None:
    deployment, _ = _operator_args({})
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    probes = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    assert probes == {"/healthz", "/readyz"}  # live, and ready: distinct (test below)


def _rules(rendered_values: dict[str, str]) -> list[dict[str, Any]]:
    rendered = template(rendered_values)
    roles = rendered.all("ClusterRole") + rendered.all("Role")
    return [rule for role in roles for rule in role["rules"]]


@pytest.mark.parametrize(
    "values", [{}, {"watchNamespaces": "{team-a}"}], ids=["cluster-wide", "namespaced"]
)
def test_no_rule_grants_secrets_or_wildcards(values: dict[str, str]) -> None:
    rules = _rules(values)
    assert rules
    for rule in rules:
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"]
        assert not {"escalate", "impersonate"} & set(rule["verbs"])


def test_namespaced_mode_grants_namespaced_rights_only_in_the_listed_namespaces() -> None:
    rendered = template({"watchNamespaces": "{team-a,team-b}"})
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in rendered.all("Role")}
    assert roles == {
        ("team-a", "qmo-operator"),
        ("team-b", "qmo-operator"),
        ("qmo-system", "qmo-operator-leader-election"),
    }
    bindings = {r["metadata"]["namespace"] for r in rendered.all("RoleBinding")}
    assert bindings == {"team-a", "team-b", "qmo-system"}
    cluster_resources = {
        resource
        for rule in rendered.one("ClusterRole", "qmo-operator")["rules"]
        for resource in rule["resources"]
    }
    assert cluster_resources == {"nodes"}


@pytest.mark.parametrize(
    "values", [{}, {"watchNamespaces": "{team-a}"}], ids=["cluster-wide", "namespaced"]
)
def test_the_gateway_api_rights_are_httproutes_only(values: dict[str, str]) -> None:
    # kubectl auth can-i cannot answer for a kind whose CRDs are not installed, so the
    # install test's table leaves these to this check of the rendered rules.
    gateway = [r for r in _rules(values) if "gateway.networking.k8s.io" in r["apiGroups"]]
    assert gateway == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "verbs": ["list", "watch", "create", "patch", "delete"],
        }
    ]


@pytest.mark.parametrize(
    "values", [{}, {"watchNamespaces": "{team-a}"}], ids=["cluster-wide", "namespaced"]
)
def test_no_rule_grants_bind_or_any_right_on_rbac_objects_or_service_accounts(
    values: dict[str, str],
) -> None:
    # Eval Jobs run with no token; the operator writes their reports itself. So it binds
    # nothing and creates no identity, and a stolen token cannot hand its rights on.
    rendered = template(values)
    assert [r["metadata"]["name"] for r in rendered.all("ClusterRole")] == ["qmo-operator"]
    for rule in _rules(values):
        assert "bind" not in rule["verbs"], rule
        assert "rbac.authorization.k8s.io" not in rule["apiGroups"], rule
        assert not {"serviceaccounts", "serviceaccounts/token"} & set(rule["resources"]), rule


def test_the_operator_may_create_and_patch_quality_reports_but_not_read_them_one_by_one() -> None:
    reports = [r for r in _rules({}) if "qualityreports" in r["resources"]]
    verbs = {verb for rule in reports for verb in rule["verbs"]}
    assert verbs == {"list", "watch", "create", "patch"}


def test_the_service_monitor_scrapes_the_metrics_service_port() -> None:
    rendered = template({"metrics.serviceMonitor.enabled": "true"})
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
        service["spec"]["ports"][0]["name"]
    ]


def test_by_default_the_chart_ships_no_dashboard_and_no_alert_rules() -> None:
    rendered = template()
    sidecar_maps = [
        d for d in rendered.all("ConfigMap") if SIDECAR_LABEL in d["metadata"].get("labels", {})
    ]
    assert sidecar_maps == []
    assert rendered.all("PrometheusRule") == []


def test_the_dashboard_config_map_carries_the_sidecar_label_and_the_dashboard() -> None:
    dashboard = CHART / "dashboards" / "qmo.json"
    config_map = template(
        {"dashboards.enabled": "true", "dashboards.annotations.grafana_folder": "qmo"}
    ).one("ConfigMap", "qmo-dashboard")
    assert config_map["metadata"]["namespace"] == "qmo-system"
    assert config_map["metadata"]["labels"][SIDECAR_LABEL] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "qmo"}
    assert list(config_map["data"]) == ["qmo.json"]
    assert json.loads(config_map["data"]["qmo.json"]) == json.loads(dashboard.read_text())
    assert config_map["data"]["qmo.json"] == dashboard.read_text().rstrip("\n")


def test_the_dashboard_goes_to_the_namespace_the_sidecar_watches() -> None:
    values = {"dashboards.enabled": "true", "dashboards.namespace": "monitoring"}
    config_map = template(values).one("ConfigMap", "qmo-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"


def test_rendering_is_deterministic_so_argo_cd_sees_no_drift() -> None:
    values = {"replicaCount": "2", "watchNamespaces": "{team-a}"}
    first = helm("template", "qmo", str(CHART), *set_flags(values)).stdout
    assert helm("template", "qmo", str(CHART), *set_flags(values)).stdout == first


def test_the_kubectl_manifest_is_the_current_rendering_of_the_chart(tmp_path: Path) -> None:
    out = tmp_path / "qmo.yaml"
    subprocess.run(
        [str(REPO / "deploy" / "render-manifests.sh"), str(out)],
        check=True,
        env={"HELM": str(helm_path()), "HOME": str(Path.home()), "PATH": "/usr/bin:/bin"},
    )
    current = (REPO / "deploy" / "kubectl" / "qmo.yaml").read_text()
    assert out.read_text() == current, (
        "deploy/kubectl/qmo.yaml is stale: run deploy/render-manifests.sh"
    )


def test_the_operator_never_gets_or_updates() -> None:
    for rule in [r for r in _rules({}) if r["resources"] != ["leases"]]:
        assert "get" not in rule["verbs"], f"reads come from watches: {rule}"
        assert "update" not in rule["verbs"], f"server-side apply only patches: {rule}"


def test_several_replicas_rather_not_share_a_node_or_a_zone_unless_told_otherwise() -> None:
    one = template().one("Deployment")["spec"]["template"]["spec"]
    assert "affinity" not in one
    assert "topologySpreadConstraints" not in one
    two = template({"replicaCount": "2"}).one("Deployment")["spec"]["template"]["spec"]
    [term] = two["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "qmo"
    [spread] = two["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == (
        "topology.kubernetes.io/zone",
        "ScheduleAnyway",
    )
    mine = template({"replicaCount": "2", "affinity.nodeAffinity.x": "y"})
    assert mine.one("Deployment")["spec"]["template"]["spec"]["affinity"] == {
        "nodeAffinity": {"x": "y"}
    }


def test_the_chart_readme_is_generated_from_the_current_values() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "charts" / "readme.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    readme = (CHART / "README.md").read_text()
    for key in ("workloadImagePullSecrets", "extraArgs", "nameOverride", "image.repository"):
        assert f"| `{key}` |" in readme, key


def test_the_packaged_chart_carries_its_license_readme_and_crds(tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    [archive] = list(tmp_path.glob("qmo-*.tgz"))
    shown = helm("show", "crds", str(archive)).stdout
    assert "quantizedmodels.qmo.dev" in shown
    assert "qualityreports.qmo.dev" in shown
    with tarfile.open(archive) as packed:
        names = set(packed.getnames())
    assert {"qmo/LICENSE", "qmo/README.md"} <= names
    chart = yaml.safe_load(helm("show", "chart", str(archive)).stdout)
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    crds = yaml.safe_load(chart["annotations"]["artifacthub.io/crds"])
    assert {c["name"] for c in crds} == {"quantizedmodels.qmo.dev", "qualityreports.qmo.dev"}


def test_extra_args_env_and_a_name_override_reach_the_operator() -> None:
    rendered = template(
        {"extraArgs": "{--workers=8}", "extraEnv[0].name": "HTTPS_PROXY",
         "extraEnv[0].value": "http://proxy:3128", "nameOverride": "quantized"}
    )  # fmt: skip
    deployment = rendered.one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--workers=8" in container["args"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "quantized"
    upgrading = (CHART / "templates" / "NOTES.txt").read_text().split("Upgrading")[1]
    assert "helm show crds" in upgrading
    assert "-f crds/" not in upgrading  # crds/ exists only in a checkout


def test_the_operators_network_policy_lets_in_only_scrapes_and_out_only_dns_and_the_api() -> None:
    assert template().all("NetworkPolicy") == []
    policy = template({"networkPolicy.enabled": "true"}).one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [scrapes] = policy["ingress"]
    assert scrapes["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    dns, api = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["port"] for p in api["ports"]} == {443, 6443}


def test_liveness_and_readiness_are_distinct() -> None:
    container = template().one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (live["path"], live["port"]) == ("/healthz", "health")
    assert (ready["path"], ready["port"]) == ("/readyz", "ready")
    assert "--ready-port=8082" in container["args"]


def test_metrics_auth_grants_the_reviews_and_a_reader_role_and_the_scrape_sends_a_token() -> None:
    plain = template()
    assert (
        "--metrics-auth"
        not in plain.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    rendered = template(
        {"metrics.auth.enabled": "true", "metrics.tls.secretName": "qmo-metrics-tls",
         "metrics.serviceMonitor.enabled": "true"}
    )  # fmt: skip
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-auth" in container["args"]
    assert "--metrics-tls-cert=/etc/qmo/metrics-tls/tls.crt" in container["args"]
    operator_role = rendered.one("ClusterRole", "qmo-operator")
    reviews = {(r["apiGroups"][0], r["resources"][0]) for r in operator_role["rules"]
               if r.get("verbs") == ["create"]}  # fmt: skip
    assert {("authentication.k8s.io", "tokenreviews"),
            ("authorization.k8s.io", "subjectaccessreviews")} <= reviews  # fmt: skip
    reader = rendered.one("ClusterRole", "qmo-operator-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    [endpoint] = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"].endswith("serviceaccount/token")


def test_an_s3_store_reaches_the_operator_and_its_node_cache_is_prepared_without_root_at_rest() -> (
    None
):
    values = VALUE_SETS["an S3 engine store with its node cache"]
    rendered = template(values)
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    parsed = build_parser().parse_args(["run", *container["args"]])
    assert (parsed.store_type, parsed.store_s3_bucket, parsed.store_s3_path_style) == (
        "s3", "qmo-artifacts", True,
    )  # fmt: skip
    assert parsed.store_gc_delete
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
            and "secretKeyRef" in e["valueFrom"]}  # fmt: skip
    assert keys["AWS_SECRET_ACCESS_KEY"] == {"name": "s3-keys", "key": "AWS_SECRET_ACCESS_KEY"}
    daemon = rendered.one("DaemonSet")["spec"]["template"]["spec"]
    (prepare,) = daemon["initContainers"]
    assert prepare["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["CHOWN", "FOWNER"],
    }  # fmt: skip
    assert daemon["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert daemon["volumes"][0]["hostPath"]["path"] == "/var/lib/qmo/cache"
    assert not template({}).all("DaemonSet"), "on the pvc store: no DaemonSet"
