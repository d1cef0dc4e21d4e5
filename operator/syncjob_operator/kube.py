"""Thin calls to the Kubernetes API that the handlers need beyond the object kopf hands them."""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from syncjob import names


@lru_cache(maxsize=1)
def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 64  # one connection per handler thread (settings.execution)
    return client.ApiClient(configuration)


def _plain(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = api_client().sanitize_for_serialization(obj)
    return result


def apply_cronjob(cronjob: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply as the operator: fields we set are ours, a hand edit of them is taken back."""
    meta = cronjob["metadata"]
    response = client.BatchV1Api(api_client()).patch_namespaced_cron_job(
        meta["name"], meta["namespace"], cronjob, field_manager=names.FIELD_MANAGER_OPERATOR, force=True,
        _content_type="application/apply-patch+yaml", _preload_content=False,  # skip the slow model round trip
    )
    result: dict[str, Any] = json.loads(response.data)
    return result


def create_job(job: dict[str, Any]) -> bool:
    """Create a Job; False if one of that name exists already (the request was acted on before)."""
    try:
        client.BatchV1Api(api_client()).create_namespaced_job(job["metadata"]["namespace"], job)
        return True
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise


def delete_job(namespace: str, name: str) -> None:
    try:
        client.BatchV1Api(api_client()).delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


def list_job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
    return [_plain(p) for p in pods.items]


def patch_syncjob_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    try:
        client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, {"status": status})
    except ApiException as exc:
        if exc.status != 404:
            raise


def renew_lease(namespace: str, holder: str, duration_seconds: int) -> None:
    """Keep the Lease the API's health check reads as proof that the operator is alive."""
    coordination = client.CoordinationV1Api(api_client())
    now = dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {"metadata": {"name": names.OPERATOR_LEASE, "namespace": namespace},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds, "renewTime": now}}
    try:
        coordination.patch_namespaced_lease(names.OPERATOR_LEASE, namespace, body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        body["spec"]["acquireTime"] = now
        coordination.create_namespaced_lease(namespace, body)
