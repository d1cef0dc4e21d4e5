"""The test bed itself: a real control plane whose CronJobs become Jobs whose pods really run, real RBAC, real SSA."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.cluster import NODE_IP, KubectlError, LocalCluster


def _wait_job(batch: client.BatchV1Api, ns: str, name: str, timeout: float = 60) -> client.V1Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job(name, ns)
        conditions = {c.type: c.status for c in job.status.conditions or []}
        if conditions.get("Complete") == "True" or conditions.get("Failed") == "True":
            return job
        time.sleep(0.5)
    raise AssertionError(f"Job {ns}/{name} did not finish in {timeout}s")


def _job(name: str, script: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", script], "env": env or []}]}}},
    }


def test_job_pod_runs_as_a_local_process_with_secret_and_downward_api_env(
    k8s: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"token": "s3cret"}))
    out = tmp_path / "out.txt"
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "GREETING", "value": "hello-$(NS)"},
    ]
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(namespace, _job("env", f'echo "$TOKEN $POD $GREETING" > {out}', env))
    job = _wait_job(batch, namespace, "env")
    assert job.status.succeeded == 1
    token, pod, greeting = out.read_text().split()
    assert token == "s3cret"
    assert pod.startswith("env-")
    assert greeting == f"hello-{namespace}"
    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector="job-name=env").items
    assert pods[0].status.phase == "Succeeded"
    assert pods[0].status.pod_ip == NODE_IP


def test_failing_command_fails_the_job_with_the_exit_code(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(namespace, _job("boom", "exit 7"))
    job = _wait_job(batch, namespace, "boom")
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    pod = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector="job-name=boom").items[0]
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7


def test_deleting_a_running_pod_sends_sigterm_first(k8s: client.ApiClient, namespace: str, tmp_path: Path) -> None:
    marker = tmp_path / "terminated"
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 10, "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", f"trap 'echo bye > {marker}; exit 0' TERM; while true; do sleep 0.1; done"]}]},
    })
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod("sleeper", namespace).status.phase != "Running":
        assert time.monotonic() < deadline, "pod never started"
        time.sleep(0.2)
    core.delete_namespaced_pod("sleeper", namespace)
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_pod("sleeper", namespace)
        except ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() < deadline, "pod was never removed"
        time.sleep(0.2)
    assert marker.read_text().strip() == "bye"


@pytest.mark.slow
def test_cronjob_every_minute_creates_a_job_that_completes(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "timeZone": "Asia/Shanghai",
                 "jobTemplate": {"spec": _job("x", "true")["spec"]}},
    })
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        jobs = batch.list_namespaced_job(namespace).items
        done = [j for j in jobs if j.status.succeeded == 1]
        if done:
            assert done[0].metadata.owner_references[0].name == "tick"
            return
        time.sleep(1)
    raise AssertionError("the CronJob controller created no completed Job within 100 s")


def test_server_side_apply_tracks_two_field_managers(k8s: client.ApiClient, namespace: str,
                                                    cluster: LocalCluster) -> None:
    def apply(manager: str, data: dict[str, str], force: bool = False) -> None:
        args = ["apply", "--server-side", f"--field-manager={manager}", "-n", namespace, "-f", "-"]
        if force:
            args.append("--force-conflicts")
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data}
        cluster.kubectl(*args, input_=json.dumps(manifest))

    apply("gitops", {"a": "1"})
    apply("api", {"b": "2"})
    cm = client.CoreV1Api(k8s).read_namespaced_config_map("shared", namespace)
    assert cm.data == {"a": "1", "b": "2"}  # each manager owns its own field; neither removed the other's
    managers = {m.manager for m in cm.metadata.managed_fields}
    assert {"gitops", "api"} <= managers

    with pytest.raises(KubectlError, match="conflict"):
        apply("api", {"a": "changed", "b": "2"})  # a is owned by gitops: a conflict, not a silent overwrite
    apply("api", {"a": "changed", "b": "2"}, force=True)
    cm = client.CoreV1Api(k8s).read_namespaced_config_map("shared", namespace)
    assert cm.data["a"] == "changed"


def test_identity_without_rights_is_denied_until_bound(cluster: LocalCluster, k8s: client.ApiClient,
                                                       namespace: str) -> None:
    nobody = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig_for("nobody"))))
    with pytest.raises(ApiException) as denied:
        nobody.list_namespaced_pod(namespace)
    assert denied.value.status == 403

    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "pod-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {"metadata": {"name": "nobody-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "nobody", "apiGroup": "rbac.authorization.k8s.io"}]})
    deadline = time.monotonic() + 30
    while True:
        try:
            assert nobody.list_namespaced_pod(namespace).items == []
            break
        except ApiException:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with pytest.raises(ApiException) as still_denied:
        nobody.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def test_every_component_listens_on_loopback_only(cluster: LocalCluster) -> None:
    assert cluster.server.startswith("https://127.0.0.1:")
    for proc in cluster.processes:
        assert proc.alive(), f"{proc.name} died:\n{proc.log_tail()}"
    pids = {p.pid for p in cluster.processes}
    sockets = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [line for line in sockets if any(f"pid={pid}," in line for pid in pids)]
    assert ours, "expected the control plane to listen somewhere"
    addresses = [line.split()[3] for line in ours]
    assert all(a.startswith("127.") for a in addresses), addresses
