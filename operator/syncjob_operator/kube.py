"""Thin calls to the Kubernetes API that the handlers need beyond the object kopf hands them.

The calls go through the kubernetes client's configuration, authentication and connection pool, but not through its
generated API classes: those validate every argument with pydantic and build typed models of every response, which
with a thousand SyncJobs costs the operator more CPU than all its own logic. Bodies here are plain JSON dicts.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from syncjob import names

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON


@lru_cache(maxsize=1)
def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 64  # at least one connection per handler thread
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook = _at_most_every(1.0, configuration.refresh_api_key_hook)
    return client.ApiClient(configuration)


def _at_most_every(seconds: float, hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """The kubeconfig loader's credential hook runs before every request and re-applies the whole kubeconfig
    (re-reading the proxy environment), which costs more CPU than the request; a token that expires is still
    refreshed within a second."""
    last = -seconds

    def throttled(configuration: Any) -> None:
        nonlocal last, hook
        now = time.monotonic()
        if now - last >= seconds:
            last = now
            hook(configuration)
            if configuration.refresh_api_key_hook is not throttled:  # the loader puts a fresh hook back each time
                hook = configuration.refresh_api_key_hook
                configuration.refresh_api_key_hook = throttled

    return throttled


def request(method: str, path: str, body: Any = None, *, content_type: str = JSON,
            query: dict[str, str] | None = None) -> dict[str, Any]:
    """One API request; the decoded JSON response, or ApiException for any status outside 2xx."""
    return request_with_status(method, path, body, content_type=content_type, query=query)[0]


def request_with_status(method: str, path: str, body: Any = None, *, content_type: str = JSON,
                        query: dict[str, str] | None = None, decode: bool = True) -> tuple[dict[str, Any], int]:
    api = api_client()
    headers = {"Accept": JSON}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, headers, payload, _ = api.param_serialize(
        method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=60)
    data = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    result: dict[str, Any] = json.loads(data) if data and decode else {}
    return result, response.status


def _path(group_version: str, namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [root, "namespaces", quote(namespace, safe=""), plural] + [quote(p, safe="") for p in (name, subresource)
                                                                        if p]
    return "/".join(parts)


def apply_cronjob(cronjob: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Server-side apply as the operator: fields we set are ours, a hand edit of them is taken back.

    Returns the CronJob as applied, and whether this call created it (HTTP 201).
    """
    meta = cronjob["metadata"]
    applied, status = request_with_status(
        "PATCH", _path("batch/v1", meta["namespace"], "cronjobs", meta["name"]), cronjob, content_type=APPLY_PATCH,
        query={"fieldManager": names.FIELD_MANAGER_OPERATOR, "force": "true"})
    return applied, status == 201


def create_job(job: dict[str, Any]) -> bool:
    """Create a Job; False if one of that name exists already (the request was acted on before)."""
    try:
        request("POST", _path("batch/v1", job["metadata"]["namespace"], "jobs"), job)
        return True
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise


def job_exists(namespace: str, name: str) -> bool:
    try:
        request("GET", _path("batch/v1", namespace, "jobs", name))
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def delete_job(namespace: str, name: str) -> None:
    try:
        request("DELETE", _path("batch/v1", namespace, "jobs", name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    except ApiException as exc:
        if exc.status != 404:
            raise


def list_job_pods(namespace: str, job_name: str, live_only: bool = False) -> list[dict[str, Any]]:
    """The pods of a Job; with `live_only`, those Pending or Running."""
    pods: list[dict[str, Any]] = request("GET", _path("v1", namespace, "pods"),
                                         query={"labelSelector": f"job-name={job_name}"})["items"]
    if live_only:
        pods = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    return pods


def patch_syncjob_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch the status subresource (the operator never writes a SyncJob's spec); gone is not an error."""
    try:
        request_with_status("PATCH", _path(f"{names.GROUP}/{names.VERSION}", namespace, names.PLURAL, name, "status"),
                            {"status": status}, content_type=MERGE_PATCH, decode=False)
    except ApiException as exc:
        if exc.status != 404:
            raise


def renew_lease(namespace: str, holder: str, duration_seconds: int) -> None:
    """Keep the Lease the API's health check reads as proof that the operator is alive."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: dict[str, Any] = {"metadata": {"name": names.OPERATOR_LEASE, "namespace": namespace},
                            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds,
                                     "renewTime": now}}
    try:
        request("PATCH", _path("coordination.k8s.io/v1", namespace, "leases", names.OPERATOR_LEASE), body,
                content_type=MERGE_PATCH)
    except ApiException as exc:
        if exc.status != 404:
            raise
        body["spec"]["acquireTime"] = now
        request("POST", _path("coordination.k8s.io/v1", namespace, "leases"), body)


def post_event(involved: dict[str, Any], type_: str, reason: str, message: str, instance: str) -> None:
    """Post an Event about a SyncJob, as kopf posts them from handlers, for code that runs outside a handler."""
    meta = involved["metadata"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "metadata": {"namespace": meta["namespace"], "generateName": "syncjob-operator-"},
        "action": "Reconcile", "type": type_, "reason": reason,
        "message": message.encode()[:1024].decode(errors="ignore"),  # the API server's limit is 1 KiB
        "reportingComponent": names.FIELD_MANAGER_OPERATOR, "reportingInstance": instance,
        "source": {"component": names.FIELD_MANAGER_OPERATOR},
        "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                           "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
        "firstTimestamp": now, "lastTimestamp": now, "eventTime": now, "count": 1,
    }
    request("POST", _path("v1", meta["namespace"], "events"), body)
