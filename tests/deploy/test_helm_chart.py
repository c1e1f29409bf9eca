"""The Helm chart, checked offline with the real helm binary and the Kubernetes
1.33 schemas that kubernetes-validate ships.

helm comes from bin/ (`make tools`, which `make test` runs first); only when it
is absent do these tests skip. Each value set in tests/helm_values/ is rendered
once and shared by the tests.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.support.helm import run_helm

CHART = REPO / "helm" / "kubenas"
VALUES_DIR = REPO / "tests" / "helm_values"
DASHBOARD = REPO / "helm" / "dashboards" / "kubenas.json"
RULES_FILE = CHART / "files" / "operator-rbac.yaml"
RELEASE = "kubenas"
NAMESPACE = "kubenas-system"
KUBE_VERSION = "1.33"

VALUE_SETS = ["default"] + sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))

# Kinds kubernetes-validate has no schema for; everything else must validate.
NO_BUNDLED_SCHEMA = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kubenas.dev/v1alpha1", "NASSearch"),
    ("kubenas.dev/v1alpha1", "NASTrial"),
}


# --------------------------------------------------------------------------- helpers


def _values_args(name: str) -> list[str]:
    return [] if name == "default" else ["-f", str(VALUES_DIR / f"{name}.yaml")]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML silently keeps the last)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


@functools.cache
def rendered_text(name: str, *extra: str) -> str:
    return run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
                 "--kube-version", KUBE_VERSION, *_values_args(name), *extra).stdout


def rendered(name: str, *extra: str) -> list[dict]:
    return [d for d in yaml.load_all(rendered_text(name, *extra), Loader=_StrictLoader) if d]


def only(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def rules_file() -> dict:
    return yaml.safe_load(RULES_FILE.read_text())


def _expand(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


# --------------------------------------------------------------------------- lint, render, validate


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_strict(values: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), *_values_args(values), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_every_rendered_manifest_validates_against_kubernetes_1_33(tmp_path: Path) -> None:
    files = {}
    expected_docs = 0
    for values in VALUE_SETS:
        path = tmp_path / f"{values}.yaml"
        path.write_text(rendered_text(values))
        files[path.name] = values
        expected_docs += len(rendered(values))
    # A deliberately broken Deployment proves that errors are reported and seen.
    broken = tmp_path / "zz-broken.yaml"
    broken.write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": "one", "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    paths = sorted(tmp_path.glob("*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", KUBE_VERSION, "--strict", *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )
    lines = proc.stdout.splitlines()
    passed, unexpected = 0, []
    broken_reported = False
    for line in lines:
        if line.startswith("INFO ") and " passed for resource " in line:
            passed += 1
        elif line.startswith("WARN "):
            m = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+) for", line)
            if not (m and (m.group(2), m.group(1)) in NO_BUNDLED_SCHEMA):
                unexpected.append(line)
        elif line.startswith("ERROR ") and str(broken) in line:
            broken_reported = "replicas" in line
        elif line.strip():
            unexpected.append(line)
    assert broken_reported, "the validator did not flag the broken control manifest:\n" + proc.stdout
    assert not unexpected, "\n".join(unexpected) + "\n" + proc.stderr
    skipped = sum(1 for line in lines if line.startswith("WARN "))
    assert passed + skipped == expected_docs, proc.stdout


# --------------------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(
    ("args", "must_mention"),
    [
        (["--set-string", "networkPolicy.enabled=yes"], ["networkPolicy/enabled", "boolean"]),
        (["--set", "service.port=http"], ["service/port", "integer"]),
        (["--set", "operator.imagee.tag=x"], ["imagee"]),
        (["--set", "monitoring.serviceMonitor.intervall=5s"], ["intervall"]),
        (["--set", "replicas=2"], ["replicas"]),
        (["--set", "operator.image.pullPolicy=Sometimes"], ["pullPolicy"]),
        (["--set", "rbac.namespaces={Team_A}"], ["rbac/namespaces"]),
    ],
    ids=["wrong-type-bool", "wrong-type-int", "unknown-nested", "unknown-deep", "unknown-top",
         "bad-enum", "bad-namespace-name"],
)
def test_schema_rejects_bad_values(args: list[str], must_mention: list[str]) -> None:
    proc = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    for word in must_mention:
        assert word in proc.stderr, f"error does not name {word!r}:\n{proc.stderr}"


def _schema_objects(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    out = []
    if schema.get("type") == "object" and "properties" in schema:
        out.append((path or "<root>", schema))
        for key, sub in schema["properties"].items():
            out.extend(_schema_objects(sub, f"{path}.{key}"))
    return out


def test_schema_closes_every_object_it_defines() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = _schema_objects(schema)
    assert len(objects) > 10
    for path, obj in objects:
        assert obj.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_every_value_is_documented_and_in_the_schema() -> None:
    """values.yaml: each leaf key has its own comment line above it, and the
    schema describes every key the file sets."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not m or not m.group(3).strip():
            continue  # a section header (its children carry the comments)
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#"):
            undocumented.append(line.strip())
    assert not undocumented, f"values without a comment above them: {undocumented}"

    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict, node: dict, path: str) -> None:
        for key, value in values.items():
            assert key in node.get("properties", {}), f"{path}{key} is not in values.schema.json"
            sub = node["properties"][key]
            if isinstance(value, dict) and "properties" in sub:
                walk(value, sub, f"{path}{key}.")

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")


# --------------------------------------------------------------------------- RBAC


def test_rbac_rules_are_least_privilege() -> None:
    rules = rules_file()
    assert set(rules) == {"namespaced", "clusterWide"}
    every = _expand(rules["namespaced"] + rules["clusterWide"])
    assert all("*" not in triple for triple in every), "wildcards in RBAC"
    granted = lambda group, resource: {v for g, r, v in every if (g, r) == (group, resource)}  # noqa: E731
    assert granted("", "secrets") == {"get", "create", "patch"}, "secrets must not be listable"
    assert granted("", "pods") == {"get", "list", "watch"}
    for sub in ("pods/log", "pods/exec", "pods/attach", "serviceaccounts/token"):
        assert not granted("", sub), sub
    for group in ("rbac.authorization.k8s.io", "admissionregistration.k8s.io"):
        assert not [t for t in every if t[0] == group], f"no rights on {group}"
    assert granted("batch", "jobs") == {"get", "list", "watch", "create", "delete", "patch"}
    assert granted("", "configmaps") == {"get", "list", "watch", "create", "patch", "update", "delete"}
    for kind in ("nassearches", "nastrials"):
        assert {"get", "list", "watch", "patch"} <= granted("kubenas.dev", kind)
        assert {"patch", "update"} <= granted("kubenas.dev", f"{kind}/status")
    assert granted("", "events") == granted("events.k8s.io", "events") == {"create", "patch"}
    # Cluster-wide, read-only, and nothing about kubenas objects.
    cluster = _expand(rules["clusterWide"])
    assert {v for _, _, v in cluster} <= {"list", "watch"}
    assert {(g, r) for g, r, _ in cluster} == {
        ("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}


def test_default_rbac_is_one_cluster_role_with_the_rule_list() -> None:
    docs = rendered("default")
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    role = only(docs, "ClusterRole")
    rules = rules_file()
    assert role["rules"] == rules["namespaced"] + rules["clusterWide"]
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    deployment = only(docs, "Deployment")
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert env_of(deployment["spec"]["template"]["spec"]["containers"][0])["KUBENAS_WATCH_NAMESPACES"] == ""


def test_namespaced_rbac_grants_kubenas_rights_only_in_the_listed_namespaces() -> None:
    docs = rendered("namespaced-rbac")
    rules = rules_file()
    namespaces = ["team-a", "team-b"]
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == namespaces
    for role in roles:
        assert role["rules"] == rules["namespaced"]
    deployment = only(docs, "Deployment")
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == namespaces
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    # No ClusterRole carries rights on kubenas objects, Jobs, pods or secrets.
    for cr in of_kind(docs, "ClusterRole"):
        assert cr["rules"] == rules["clusterWide"], cr["metadata"]["name"]
        assert not [t for t in _expand(cr["rules"]) if t[0] in {"kubenas.dev", "batch"}
                    or t[1] in {"pods", "secrets", "configmaps"}]
    for crb in of_kind(docs, "ClusterRoleBinding"):
        assert crb["roleRef"]["name"] in {cr["metadata"]["name"] for cr in of_kind(docs, "ClusterRole")}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["KUBENAS_WATCH_NAMESPACES"] == "team-a,team-b"
    # Trial pods need their ServiceAccount where they run.
    trainer_sas = [d for d in of_kind(docs, "ServiceAccount")
                   if d["metadata"]["name"] == env_of(container)["KUBENAS_TRAINER_SERVICE_ACCOUNT"]]
    assert sorted(d["metadata"]["namespace"] for d in trainer_sas) == sorted([NAMESPACE, *namespaces])
    # Trainer traffic is admitted only from the watched namespaces.
    policy = only(docs, "NetworkPolicy")
    peer = policy["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]


def test_rbac_disabled_renders_no_rbac_objects() -> None:
    docs = rendered("minimal")
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "NetworkPolicy", "ServiceAccount"):
        assert not of_kind(docs, kind), kind
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "preexisting-operator"


# --------------------------------------------------------------------------- operator Deployment and Service


@pytest.mark.parametrize("values", VALUE_SETS)
def test_operator_deployment_is_single_recreate_probed_and_locked_down(values: str) -> None:
    docs = rendered(values)
    deployment = only(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] != 0
    assert len(pod["containers"]) == 1
    (container,) = pod["containers"]
    csc = container["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert port_names.get(get["port"], get["port"]) == 8080
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # The read-only root filesystem needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_report_url_is_the_service_dns_name(values: str) -> None:
    docs = rendered(values)
    service = only(docs, "Service")
    deployment = only(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == "http"
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
    assert ns == NAMESPACE
    assert env["KUBENAS_REPORT_URL_BASE"] == f"http://{name}.{ns}.svc.cluster.local:8080"
    assert env["KUBENAS_HTTP_PORT"] == "8080"


def test_default_images_follow_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    docs = rendered("default")
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"kubenas-operator:{chart['appVersion']}"
    env = env_of(container)
    assert env["KUBENAS_TRAINER_IMAGE"] == f"kubenas-trainer:{chart['appVersion']}"
    assert env["KUBENAS_TRAINER_IMAGE_PULL_SECRETS"] == ""
    assert "imagePullSecrets" not in only(docs, "Deployment")["spec"]["template"]["spec"]


def test_custom_images_and_pull_secrets() -> None:
    values = yaml.safe_load((VALUES_DIR / "custom-images.yaml").read_text())
    docs = rendered("custom-images")
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    op, tr = values["operator"], values["trainer"]
    assert container["image"] == f"{op['image']['repository']}:{op['image']['tag']}"
    assert container["imagePullPolicy"] == op["image"]["pullPolicy"]
    assert pod["imagePullSecrets"] == [{"name": n} for n in op["imagePullSecrets"]]
    assert container["resources"] == op["resources"]
    assert pod["tolerations"] == op["tolerations"]
    env = env_of(container)
    assert env["KUBENAS_TRAINER_IMAGE"] == f"{tr['image']['repository']}:{tr['image']['tag']}"
    assert env["KUBENAS_TRAINER_IMAGE_PULL_POLICY"] == tr["image"]["pullPolicy"]
    assert env["KUBENAS_TRAINER_IMAGE_PULL_SECRETS"] == ",".join(tr["imagePullSecrets"])
    assert env["KUBENAS_TRAINER_SERVICE_ACCOUNT"] == tr["serviceAccount"]["name"]
    assert env["KUBENAS_LOG_LEVEL"] == "debug"
    sa = only(docs, "ServiceAccount", tr["serviceAccount"]["name"])
    assert sa["metadata"]["annotations"] == tr["serviceAccount"]["annotations"]
    assert env["KUBENAS_REPORT_URL_BASE"] == f"http://nas.{NAMESPACE}.svc.cluster.local:8080"


# --------------------------------------------------------------------------- trainer isolation


@pytest.mark.parametrize("values", VALUE_SETS)
def test_trainer_service_account_has_no_token_and_no_rights(values: str) -> None:
    docs = rendered(values)
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    trainer_sa = env_of(container)["KUBENAS_TRAINER_SERVICE_ACCOUNT"]
    accounts = [d for d in of_kind(docs, "ServiceAccount") if d["metadata"]["name"] == trainer_sa]
    if values == "minimal":
        assert not accounts
    else:
        assert accounts
    for sa in accounts:
        assert sa["automountServiceAccountToken"] is False
    for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
        assert trainer_sa not in {s["name"] for s in binding["subjects"]}, binding["metadata"]["name"]


@pytest.mark.parametrize("values", ["default", "namespaced-rbac", "monitoring"])
def test_network_policy_admits_only_trainer_pods_on_the_status_port(values: str) -> None:
    docs = rendered(values)
    policy = only(docs, "NetworkPolicy")
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    assert len(spec["ingress"]) == 1
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    trainer_peer = rule["from"][0]
    assert trainer_peer["podSelector"] == {"matchLabels": {"kubenas.dev/role": "trainer"}}
    extra = yaml.safe_load((VALUES_DIR / f"{values}.yaml").read_text()) if values != "default" else {}
    assert rule["from"][1:] == (extra.get("networkPolicy") or {}).get("extraFrom", [])


# --------------------------------------------------------------------------- monitoring


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {d["kind"] for d in rendered("default")}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_service_monitor_scrapes_the_operator_metrics() -> None:
    docs = rendered("monitoring")
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    # kubenas metrics' own `namespace` label (the search's) must survive the scrape.
    assert endpoint["honorLabels"] is True


def test_prometheus_rule_has_the_alerts() -> None:
    docs = rendered("monitoring")
    rule = only(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"KubenasSearchFailed", "KubenasSearchStalled",
                           "KubenasStatusAPIReportErrors", "KubenasOperatorDown"}
    assert 'kubenas_searches{phase="Failed"} > 0' in alerts["KubenasSearchFailed"]["expr"]
    stalled = alerts["KubenasSearchStalled"]["expr"]
    assert "increase(kubenas_trials_total[90m])" in stalled
    assert "kubenas_trials_running" in stalled and "kubenas_trials_pending" in stalled
    assert "> 0.05" in alerts["KubenasStatusAPIReportErrors"]["expr"]
    assert f'job="{RELEASE}"' in alerts["KubenasOperatorDown"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"]


def test_operator_down_alert_needs_the_service_monitor() -> None:
    docs = rendered("default", "--set", "monitoring.prometheusRule.enabled=true")
    alerts = {r["alert"] for g in only(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert "KubenasOperatorDown" not in alerts and "KubenasSearchFailed" in alerts


def test_dashboard_config_map_carries_the_dashboard() -> None:
    docs = rendered("monitoring")
    cm = only(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "AutoML"}
    assert json.loads(cm["data"]["kubenas.json"]) == json.loads(DASHBOARD.read_text())
    relabelled = rendered("monitoring", "--set", "grafana.dashboard.label=dash",
                          "--set", "grafana.dashboard.labelValue=yes")
    labels = only(relabelled, "ConfigMap")["metadata"]["labels"]
    assert labels["dash"] == "yes" and "grafana_dashboard" not in labels


def test_chart_dashboard_is_a_byte_identical_copy() -> None:
    copy = CHART / "dashboards" / "kubenas.json"
    assert copy.read_bytes() == DASHBOARD.read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {DASHBOARD.relative_to(REPO)}: run make dashboards "
        "(both are generated by nas_operator.monitoring.dashboard)")


# --------------------------------------------------------------------------- CRDs and NOTES


def test_chart_crds_are_byte_identical_to_the_generated_ones() -> None:
    top = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.y*ml"))}
    in_chart = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.y*ml"))}
    if not top:
        assert not in_chart, "the chart has CRDs but the top-level crds/ has none"
        pytest.skip("top-level crds/ holds no YAML yet (generated from the pydantic models)")
    assert sorted(in_chart) == sorted(top), "the chart's crds/ and crds/ hold different files"
    for name, data in top.items():
        assert in_chart[name] == data, f"helm/kubenas/crds/{name} differs from crds/{name}: run make crds"
    # helm installs them with the chart.
    kinds = {d["spec"]["names"]["kind"] for d in rendered("default")
             if d["kind"] == "CustomResourceDefinition"}
    assert {"NASSearch", "NASTrial"} <= kinds


def test_notes_tell_the_user_what_to_do_next() -> None:
    proc = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                 *_values_args("monitoring"))
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}-operator" in notes
    assert "kubectl apply" in notes and "examples/" in notes
    assert "kubectl get nas" in notes and "kubectl get nastrials" in notes
    assert f"port-forward service/{RELEASE} 8080:8080" in notes
    assert "/metrics" in notes
    assert f"ConfigMap {RELEASE}-dashboard" in notes
