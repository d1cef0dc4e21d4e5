"""Every endpoint by every caller, in both auth modes: no token and a bad token get 401, a viewer reads but may not
mutate (403, audited as denied), an admin does both; in kubernetes mode a user without RBAC rights gets 403."""

from __future__ import annotations

from typing import Any

import pytest

from syncjob import mongo
from tests.api.conftest import Api

READ, MUTATE = "read", "mutate"
ENDPOINTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/jobs", READ, {}),
    ("GET", "/jobs/alpha", READ, {}),
    ("POST", "/jobs/alpha/pause", MUTATE, {}),
    ("POST", "/jobs/alpha/resume", MUTATE, {}),
    ("POST", "/jobs/alpha/trigger", MUTATE, {}),
    ("PUT", "/jobs/alpha/metadata", MUTATE, {"json": {"display_name": "Alpha"}}),
    ("GET", "/jobs/alpha/history", READ, {}),
    ("GET", "/history", READ, {}),
    ("GET", "/stats", READ, {}),
    ("GET", "/health", READ, {}),
    ("GET", "/executions", READ, {}),
    ("GET", "/jobs/alpha/executions", READ, {}),
    ("GET", "/jobs/alpha/execution-stats", READ, {}),
    ("POST", "/executions/{ns}.alpha-running/cancel", MUTATE, {}),
    ("POST", "/executions/{ns}.alpha-running/mark-failed", MUTATE, {}),
    ("DELETE", "/executions/{ns}.alpha-done", MUTATE, {}),
]


def _prepare(api: Api) -> None:
    api.create_syncjob("alpha", concurrencyPolicy="Allow")  # a trigger beside the running run is accepted
    api.add_execution("alpha-running", "alpha", status="running")
    api.add_execution("alpha-done", "alpha", status="success", execution_time=1.2)


def _check(api: Api, method: str, path: str, kind: str, kwargs: dict[str, Any], callers: list[str]) -> None:
    path = path.replace("{ns}", api.namespace)  # run ids are `<namespace>.<job>`
    for who in (None, "bad"):
        r = api.request(method, path, who, **kwargs)
        assert r.status_code == 401, (who, r.text)
        assert r.json()["success"] is False and r.json()["data"] is None
        assert r.headers["www-authenticate"] == "Bearer"
    for who in callers:
        r = api.request(method, path, who, **kwargs)
        assert r.status_code == 403, (who, r.text)
        assert r.json()["success"] is False
    r = api.request(method, path, "viewer", **kwargs)
    if kind == READ:
        assert r.status_code == 200, r.text
        assert r.json()["success"] is True
    else:
        assert r.status_code == 403, r.text
        assert r.json() == {"success": False, "data": None, "message": r.json()["message"],
                            "timestamp": r.json()["timestamp"]}
        denied = list(api.db[mongo.HISTORY].find({"status": "denied"}))
        assert len(denied) == len(callers) + 1
        assert {d["via"] for d in denied} == {"api"}
        assert all(d["job_id"] == "alpha" for d in denied), denied
    r = api.request(method, path, "admin", **kwargs)
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    if kind == MUTATE:
        assert api.db[mongo.HISTORY].count_documents({"status": "success", "user": {"$ne": None}}) == 1


@pytest.mark.parametrize(("method", "path", "kind", "kwargs"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_static_tokens_authorize_every_endpoint(api: Api, method: str, path: str, kind: str,
                                                kwargs: dict[str, Any]) -> None:
    _prepare(api)
    _check(api, method, path, kind, kwargs, callers=[])


@pytest.mark.parametrize(("method", "path", "kind", "kwargs"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_kubernetes_rbac_authorizes_every_endpoint(kube_api: Api, method: str, path: str, kind: str,
                                                   kwargs: dict[str, Any]) -> None:
    _prepare(kube_api)
    _check(kube_api, method, path, kind, kwargs, callers=["nobody"])
