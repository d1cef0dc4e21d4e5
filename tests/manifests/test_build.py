"""Every kustomization builds, and what manifests/default renders is what a secure install needs.

No cluster: `kubectl kustomize` only. The server-side checks are in test_on_cluster.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from syncjob_operator import builders
from syncjob_operator.settings import OperatorSettings

from syncjob import names
from syncjob.model import SyncJob
from tests.manifests.conftest import KUSTOMIZATIONS, MANIFESTS, ROOT, build, by_kind, kubectl_bin

DEFAULT = MANIFESTS / "default"
SYSTEM = "syncjob-system"


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_builds(path: Path) -> None:
    docs = build(path)
    assert docs, f"{path} renders nothing"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


def test_kubebuilder_layout_is_complete() -> None:
    built = {p.relative_to(MANIFESTS).as_posix() for p in KUSTOMIZATIONS if MANIFESTS in p.parents}
    assert {"crd", "rbac", "operator", "api", "mongodb", "default", "samples", "webhook"} <= built


def test_default_installs_everything_into_syncjob_system() -> None:
    docs = build(DEFAULT)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "Deployment", "StatefulSet", "Service", "NetworkPolicy"} <= kinds
    assert list(by_kind(docs, "Namespace")) == [SYSTEM]
    assert list(by_kind(docs, "CustomResourceDefinition")) == [names.CRD_NAME]
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                      "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == SYSTEM, f"{doc['kind']}/{doc['metadata']['name']}"
    for binding in [*by_kind(docs, "ClusterRoleBinding").values(), *by_kind(docs, "RoleBinding").values()]:
        assert all(s["namespace"] == SYSTEM for s in binding["subjects"]), binding["metadata"]["name"]



def test_only_the_apis_service_account_may_write_as_the_apis_field_manager() -> None:
    """The admission policy names the API's ServiceAccount as deployed and every annotation the API writes with a
    request; what it refuses on a real API server is in tests/security/test_api_identity.py."""
    docs = build(DEFAULT)
    api = by_kind(docs, "Deployment")["syncjob-api"]
    account = api["spec"]["template"]["spec"]["serviceAccountName"]
    policy = by_kind(docs, "ValidatingAdmissionPolicy")["syncjob-api-identity"]
    assert "namespace" not in policy["metadata"]  # cluster-scoped
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        f"request.userInfo.username != 'system:serviceaccount:{api['metadata']['namespace']}:{account}'")
    keys = next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == "keys")
    assert sorted(yaml.safe_load(keys)) == sorted(
        [names.REQUESTED_AT, names.REQUESTED_BY, names.FORCE_AT, names.CANCEL_AT, names.CANCEL_REQUESTED_BY,
         names.CANCEL_RUNS])
    assert names.FIELD_MANAGER_API in policy["spec"]["validations"][0]["expression"]
    (binding,) = by_kind(docs, "ValidatingAdmissionPolicyBinding").values()
    assert binding["spec"] == {"policyName": "syncjob-api-identity", "validationActions": ["Deny"]}

def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_images_pin_operator_api_and_sync_pods_in_one_place(tmp_path: Path) -> None:
    """Changing `images:` in manifests/default also changes the image the operator gives sync pods."""
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    kustomization_file = tmp_path / "manifests" / "default" / "kustomization.yaml"
    kustomization = yaml.safe_load(kustomization_file.read_text())
    kustomization["images"] = [  # as `kustomize edit set image` writes them
        {"name": "ghcr.io/tradingagents/syncjob-operator", "newName": "registry.test/op", "newTag": "1.2.3"},
        {"name": "ghcr.io/tradingagents/syncjob-api", "newName": "registry.test/api", "newTag": "1.2.3"},
        {"name": "ghcr.io/tradingagents/syncjob-sync", "newName": "registry.test/sync", "newTag": "1.2.3"},
    ]
    kustomization_file.write_text(yaml.safe_dump(kustomization))
    out = subprocess.run([kubectl_bin(), "kustomize", str(kustomization_file.parent)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    deployments = by_kind([d for d in yaml.safe_load_all(out.stdout) if d], "Deployment")
    operator = _containers(deployments["syncjob-operator"])[0]
    assert operator["image"] == "registry.test/op:1.2.3"
    assert _env(operator)["SYNC_IMAGE"]["value"] == "registry.test/sync:1.2.3"
    assert _containers(deployments["syncjob-api"])[0]["image"] == "registry.test/api:1.2.3"


def test_workloads_have_secure_defaults_probes_and_resources() -> None:
    docs = build(DEFAULT)
    workloads = {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}
    assert set(workloads) == {"syncjob-operator", "syncjob-api", "syncjob-mongodb"}
    for name, doc in workloads.items():
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["livenessProbe"] and c["readinessProbe"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{name}: read-only root needs /tmp"
    operator = workloads["syncjob-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "syncjob-operator"
    assert workloads["syncjob-api"]["spec"]["template"]["spec"]["serviceAccountName"] == "syncjob-api"
    liveness = _containers(operator)[0]["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert _env(_containers(operator)[0])["LIVENESS_ENDPOINT"]["value"] == "http://0.0.0.0:8080/healthz"
    assert _containers(workloads["syncjob-mongodb"])[0]["image"] == "mongo:7"


def test_operator_env_is_what_its_settings_read() -> None:
    operator = _containers(by_kind(build(DEFAULT), "Deployment")["syncjob-operator"])[0]
    env = _env(operator)
    read_elsewhere = {"LIVENESS_ENDPOINT", "PYTHONUNBUFFERED"}  # __main__ reads the first; Python the second
    unknown = {n for n in env if n.lower() not in OperatorSettings.model_fields} - read_elsewhere
    assert not unknown, f"env the operator never reads: {unknown}"
    assert env["MONGO_URI"]["valueFrom"]["secretKeyRef"] == {"name": "syncjob-mongo-operator", "key": "MONGO_URI"}
    assert env["OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["WATCH_NAMESPACES"]["value"] == ""
    assert env["MONGO_SECRET_NAME"]["value"] == "syncjob-mongo"
    assert env["TUSHARE_SECRET_NAME"]["value"] == "syncjob-tushare"
    # the account sync pods run as is the one manifests/sync-namespace makes in each SyncJob namespace
    accounts = by_kind(build(MANIFESTS / "sync-namespace"), "ServiceAccount")
    assert env["SYNC_SERVICE_ACCOUNT"]["value"] in accounts
    assert accounts[env["SYNC_SERVICE_ACCOUNT"]["value"]]["automountServiceAccountToken"] is False


def test_api_env_is_what_its_settings_read() -> None:
    config = pytest.importorskip("syncjob_api.core.config")
    api = _containers(by_kind(build(DEFAULT), "Deployment")["syncjob-api"])[0]
    env = _env(api)
    unknown = {n for n in env if n.lower() not in config.Settings.model_fields} - {"PYTHONUNBUFFERED"}
    assert not unknown, f"env the API never reads: {unknown}"
    assert env["AUTH_MODE"]["value"] == "kubernetes"
    assert env["MONGO_URI"]["valueFrom"]["secretKeyRef"] == {"name": "syncjob-mongo-api", "key": "MONGO_URI"}
    assert env["API_HOST"]["value"] == "0.0.0.0"
    port = int(env["API_PORT"]["value"])
    assert api["ports"][0]["containerPort"] == port
    service = by_kind(build(DEFAULT), "Service")["syncjob-api"]
    assert service["spec"]["ports"][0]["targetPort"] == api["ports"][0]["name"]


def test_sync_pods_service_account_has_no_token() -> None:
    docs = build(MANIFESTS / "sync-namespace")
    account = by_kind(docs, "ServiceAccount")["syncjob-sync"]
    assert account["automountServiceAccountToken"] is False
    assert "namespace" not in account["metadata"], "created in each SyncJob namespace with -n"
    assert not by_kind(docs, "RoleBinding") and not by_kind(docs, "Role")


def test_network_policies_admit_only_the_needed_traffic() -> None:
    policies = by_kind(build(DEFAULT), "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert policies["syncjob-api"]["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    mongo_from = policies["syncjob-mongodb"]["spec"]["ingress"][0]["from"]
    assert mongo_from[0] == {"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["syncjob-operator", "syncjob-api"]}]}}
    sync_pods = mongo_from[1]["podSelector"]
    assert sync_pods["matchLabels"] == {names.LABEL_MANAGED_BY: names.MANAGED_BY}
    assert sync_pods["matchExpressions"] == [{"key": names.LABEL_SYNCJOB, "operator": "Exists"}]

    sync = by_kind(build(MANIFESTS / "sync-namespace"), "NetworkPolicy")["syncjob-sync"]["spec"]
    assert sync["policyTypes"] == ["Ingress", "Egress"] and sync["ingress"] == []
    egress_ports = {(p["port"], p["protocol"]) for rule in sync["egress"] for p in rule["ports"]}
    assert egress_ports == {(27017, "TCP"), (53, "UDP"), (53, "TCP"), (443, "TCP"), (80, "TCP"), (10030, "TCP")}
    internet = next(r for r in sync["egress"] if any(p["port"] == 443 for p in r["ports"]))
    assert "10.0.0.0/8" in internet["to"][0]["ipBlock"]["except"]
    assert "169.254.0.0/16" in internet["to"][0]["ipBlock"]["except"], "no cloud metadata service"


def test_operator_labels_match_what_the_policies_select() -> None:
    """The sync pods the operator renders carry the labels the MongoDB and egress policies select on."""
    sj = SyncJob.from_k8s({"metadata": {"name": "x", "namespace": "market-data", "uid": "u"},
                           "spec": {"task": "daily", "schedule": "0 17 * * 1-5", "sources": ["file"]}})
    settings = OperatorSettings(mongo_uri="mongodb://x")
    pod_labels = builders.job_spec(sj, settings)["template"]["metadata"]["labels"]
    assert pod_labels[names.LABEL_MANAGED_BY] == names.MANAGED_BY
    assert names.LABEL_SYNCJOB in pod_labels


def test_webhook_overlay_wires_service_port_certificate_and_operator_together() -> None:
    docs = build(MANIFESTS / "webhook")
    operator = by_kind(docs, "Deployment")["syncjob-operator"]
    container = _containers(operator)[0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert _env(container)["WEBHOOK_PORT"]["value"] == str(ports["webhook"])
    assert ports["health"] == 8080  # the patch adds to the base's ports and env, replacing nothing
    assert "MONGO_URI" in _env(container)
    service = by_kind(docs, "Service")["syncjob-operator-webhook"]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert service["spec"]["selector"].items() <= operator["spec"]["template"]["metadata"]["labels"].items()
    hook = by_kind(docs, "ValidatingWebhookConfiguration")["syncjob-operator"]["webhooks"][0]
    assert hook["clientConfig"]["service"] == {"name": "syncjob-operator-webhook", "namespace": SYSTEM,
                                               "path": "/validate-syncjob", "port": 443}
    assert hook["failurePolicy"] == "Ignore" and hook["rules"][0]["resources"] == ["syncjobs"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret = next(v["secret"]["secretName"] for v in operator["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "webhook-tls")
    assert mounts["webhook-tls"] == "/etc/syncjob-operator/webhook" and secret == "syncjob-operator-webhook-tls"


def _mongodb_ingress_peers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(by_kind(docs, "NetworkPolicy")["syncjob-mongodb"]["spec"]["ingress"][0]["from"])


def test_mongodb_admits_sync_pods_only_from_namespaces_named_by_the_api_server() -> None:
    """Pods outside syncjob-system reach MongoDB only from listed namespaces, by `kubernetes.io/metadata.name`
    (set by the API server, unforgeable); a label on a pod or on a namespace a tenant owns is never enough."""
    for peer in _mongodb_ingress_peers(build(DEFAULT)):
        if "namespaceSelector" not in peer:
            assert set(peer) == {"podSelector"}, "a podSelector alone: the policy's own namespace"
            continue
        selector = peer["namespaceSelector"]
        assert "matchLabels" not in selector, "namespaces by name only"
        assert selector["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["market-data"]}]
        assert peer["podSelector"]["matchLabels"] == {names.LABEL_MANAGED_BY: names.MANAGED_BY}


def test_a_kustomize_patch_lists_your_syncjob_namespaces(tmp_path: Path) -> None:
    """The overlay docs/security.md shows: replace the list of SyncJob namespaces that may reach MongoDB."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    docs_text = (ROOT / "docs" / "security.md").read_text()
    kustomization = docs_text.split("<!-- overlay -->")[1].split("```yaml")[1].split("```")[0]
    (overlay / "kustomization.yaml").write_text(kustomization)
    out = subprocess.run([kubectl_bin(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    peers = _mongodb_ingress_peers([d for d in yaml.safe_load_all(out.stdout) if d])
    assert peers[1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["market-data", "research"]
    assert peers[1]["podSelector"]["matchLabels"] == {names.LABEL_MANAGED_BY: names.MANAGED_BY}


def test_each_component_has_its_own_mongodb_secret_and_the_database_creates_their_users() -> None:
    from syncjob import mongo_users

    docs = build(DEFAULT)
    deployments = by_kind(docs, "Deployment")
    secrets = {name: _env(_containers(d)[0])["MONGO_URI"]["valueFrom"]["secretKeyRef"]["name"]
               for name, d in deployments.items()}
    operator_env = _env(_containers(deployments["syncjob-operator"])[0])
    secrets["sync pods"] = operator_env["MONGO_SECRET_NAME"]["value"]
    assert secrets == {"syncjob-operator": "syncjob-mongo-operator", "syncjob-api": "syncjob-mongo-api",
                       "sync pods": "syncjob-mongo"}

    mongodb = by_kind(docs, "StatefulSet")["syncjob-mongodb"]
    container = _containers(mongodb)[0]
    env = _env(container)
    for role in mongo_users.ROLES.values():
        assert env[role.password_env]["valueFrom"]["secretKeyRef"] == {"name": "syncjob-mongodb",
                                                                       "key": role.password_env}
    assert env["SYNCJOB_DATABASE"]["value"] == "tradingagents"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/docker-entrypoint-initdb.d")
    volume = next(v for v in mongodb["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    config_map = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    assert config_map["metadata"]["namespace"] == SYSTEM
    assert config_map["data"]["syncjob-users.js"] == mongo_users.render_js()


def test_a_syncjob_namespace_overlay_generates_the_sync_pods_secret(tmp_path: Path) -> None:
    """The overlay docs/security.md shows: manifests/sync-namespace plus the Secret syncjob-mongo from a file."""
    overlay = tmp_path / "research"
    overlay.mkdir()
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    text = (ROOT / "docs" / "security.md").read_text()
    (overlay / "kustomization.yaml").write_text(text.split("<!-- namespace-overlay -->")[1].split("```yaml")[1]
                                                .split("```")[0])
    (overlay / "mongo.env").write_text("MONGO_URI=mongodb://syncjob-sync:pw@db:27017/tradingagents\n")
    out = subprocess.run([kubectl_bin(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    secret = by_kind(docs, "Secret")[OperatorSettings(mongo_uri="mongodb://x").mongo_secret_name]
    assert secret["metadata"]["namespace"] == "research" and set(secret["data"]) == {"MONGO_URI"}
    assert {"ServiceAccount", "NetworkPolicy"} <= {d["kind"] for d in docs}
