"""The API's writes to Kubernetes: merge patches on SyncJobs (field manager syncjob-api) and the reads a mutation
needs (the SyncJob as the API server has it now, has the operator created the run's Job yet, is a run's pod still
alive), and the one deletion it makes: the Job of a run an admin marked failed, so that its pod stops.

Pause and resume patch spec.paused; trigger and cancel set Flux-style request tokens as annotations, which the
operator acknowledges in status. A token is new on every request, so each request is exactly one action; a trigger
sets its token only on the SyncJob it read (`metadata.resourceVersion` in the patch), see services/trigger.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from syncjob import names
from syncjob_api.core.kube import REQUEST_TIMEOUT

LIVE_POD_PHASES = ("Pending", "Running")


def new_token() -> str:
    """A request token: seconds since the epoch (as `date +%s` gives kubectl users) plus a random suffix."""
    return f"{int(time.time())}-{secrets.token_hex(4)}"


def _syncjob_call(namespace: str, name: str, call: Callable[[], Any]) -> dict[str, Any]:
    """One call on a SyncJob: its object, or 404 when the SyncJob is gone (other refusals raise ApiException)."""
    try:
        obj = call()
    except ApiException as exc:
        if exc.status == 404:
            raise HTTPException(404, f"SyncJob {namespace}/{name} not found") from exc
        raise
    assert isinstance(obj, dict)
    return obj


def get_syncjob(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The SyncJob as the API server has it now (not the cache's copy)."""
    return _syncjob_call(namespace, name, lambda: client.CustomObjectsApi(api).get_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, name, _request_timeout=REQUEST_TIMEOUT))


def patch_syncjob(api: client.ApiClient, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A merge patch; with `metadata.resourceVersion` in the body it applies only to that version (ApiException
    409 when the object changed since)."""
    return _syncjob_call(namespace, name, lambda: client.CustomObjectsApi(api).patch_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, name, body, field_manager=names.FIELD_MANAGER_API,
        _request_timeout=REQUEST_TIMEOUT))


def wait_for_job(api: client.ApiClient, namespace: str, job_name: str, seconds: float) -> bool:
    """Whether the Job exists, polling for up to `seconds`; False when it does not appear in time."""
    batch = client.BatchV1Api(api)
    deadline = time.monotonic() + seconds
    while True:
        try:
            batch.read_namespaced_job(job_name, namespace, _request_timeout=REQUEST_TIMEOUT)
            return True
        except ApiException as exc:
            if exc.status != 404:
                return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def live_pods(api: client.ApiClient, namespace: str, job_name: str) -> list[str]:
    """Pods of a run's Job that are Pending or Running, as `name (phase)`."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"job-name={job_name}", _request_timeout=REQUEST_TIMEOUT)
    return [f"{p.metadata.name} ({p.status.phase})" for p in pods.items
            if p.status is not None and p.status.phase in LIVE_POD_PHASES]


def delete_job(api: client.ApiClient, namespace: str, job_name: str) -> None:
    """Delete a run's Job and, through the garbage collector, its pods (which get SIGTERM); gone already is fine."""
    try:
        client.BatchV1Api(api).delete_namespaced_job(job_name, namespace, propagation_policy="Background",
                                                     _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise
