"""Fixtures for API tests: the app built by `create_app` against the local cluster and SecantusDB.

`api` is a TestClient around an app serving one fresh namespace (its WATCH_NAMESPACE and OPERATOR_NAMESPACE) and
one fresh database, with callers by role: `api.get(path, who="viewer")`. In static mode the roles are tokens from a
tokens file; in kubernetes mode they are the test bed's identities, bound by RBAC in the namespace (alice viewer,
bob admin, nobody nothing).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes import client
from pymongo.database import Database
from syncjob_api.core.config import Settings
from syncjob_api.main import create_app

from syncjob import mongo, names
from syncjob.executions import identity
from syncjob.runs import run_id as make_run_id
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from tests.conftest import make_syncjob

STATIC_TOKENS = {
    "viewer": ("viewer-" + uuid.uuid4().hex, "vera", "viewer"),
    "admin": ("admin-" + uuid.uuid4().hex, "adam", "admin"),
}
BAD_TOKEN = "not-a-valid-token-" + uuid.uuid4().hex


def mongo_uri(server: MongoServer, db: Database[Any]) -> str:
    return f"mongodb://127.0.0.1:{server.port}/{db.name}?directConnection=true"


class Api:
    """A TestClient with named callers: None (no token), "bad", "viewer", "admin" (and "nobody" in k8s mode)."""

    def __init__(self, http: TestClient, tokens: dict[str, str], namespace: str, db: Database[Any],
                 k8s: client.ApiClient, mode: str) -> None:
        self.http = http
        self.tokens = {**tokens, "bad": BAD_TOKEN}
        self.namespace = namespace
        self.db = db
        self.k8s = k8s
        self.mode = mode

    @property
    def app(self) -> Any:
        return self.http.app

    def request(self, method: str, path: str, who: str | None = "admin", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        url = path if path.startswith("/metrics") else f"/api/scheduler{path}"
        return self.http.request(method, url, headers=headers, **kwargs)

    def get(self, path: str, who: str | None = "viewer", **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, who, **kwargs)

    def post(self, path: str, who: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, who, **kwargs)

    def put(self, path: str, who: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, who, **kwargs)

    def delete(self, path: str, who: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, who, **kwargs)

    # -- world setup ------------------------------------------------------------------------------------------

    def create_syncjob(self, name: str, wait: bool = True, **spec: Any) -> dict[str, Any]:
        body = make_syncjob(name, **spec)
        created = client.CustomObjectsApi(self.k8s).create_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.PLURAL, body)
        if wait:
            self.wait_for(lambda: self.get(f"/jobs/{name}", who="admin").status_code == 200, f"job {name} served")
        return created  # type: ignore[no-any-return]

    def syncjob(self, name: str) -> dict[str, Any]:
        return client.CustomObjectsApi(self.k8s).get_namespaced_custom_object(  # type: ignore[no-any-return]
            names.GROUP, names.VERSION, self.namespace, names.PLURAL, name)

    def run_id(self, job_name: str) -> str:
        """The run id of a Job of this namespace: `<namespace>.<job name>`."""
        return make_run_id(self.namespace, job_name)

    def add_execution(self, job_name: str, job_id: str, status: str = "running", **fields: Any) -> dict[str, Any]:
        """A record of the run whose Job is `job_name` (its id: `<namespace>.<job_name>`)."""
        now = fields.pop("now", None) or dt.datetime.now(dt.UTC)
        doc = identity(run_id=self.run_id(job_name), job_id=job_id, namespace=self.namespace, job=job_name,
                       trigger="manual", force=False, scheduled_time=now, created=now)
        doc.update({"status": status, "progress": 0, **fields})
        self.db[mongo.EXECUTIONS].insert_one(doc)
        return doc

    def execution(self, job_name: str) -> dict[str, Any] | None:
        return self.db[mongo.EXECUTIONS].find_one({"_id": self.run_id(job_name)})

    def history(self, **query: Any) -> list[dict[str, Any]]:
        return list(self.db[mongo.HISTORY].find(query).sort("timestamp", 1))

    def renew_lease(self, age_seconds: float = 0) -> None:
        renew = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_seconds)
        body = {"metadata": {"name": names.OPERATOR_LEASE, "namespace": self.namespace},
                "spec": {"holderIdentity": "test", "leaseDurationSeconds": 40, "renewTime": renew}}
        coordination = client.CoordinationV1Api(self.k8s)
        try:
            coordination.patch_namespaced_lease(names.OPERATOR_LEASE, self.namespace, body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            coordination.create_namespaced_lease(self.namespace, body)

    @staticmethod
    def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


def acknowledge(api: Api, name: str, **status: Any) -> str | None:
    """Play the operator: acknowledge the SyncJob's requested-at token in its status (with more `status` fields)."""
    token = (api.syncjob(name)["metadata"].get("annotations") or {}).get(names.REQUESTED_AT)
    client.CustomObjectsApi(api.k8s).patch_namespaced_custom_object_status(
        names.GROUP, names.VERSION, api.namespace, names.PLURAL, name,
        {"status": {"lastHandledRequestedAt": token, **status}})
    return token  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    path.write_text(yaml.safe_dump([{"token": t, "user": u, "role": r} for t, u, r in STATIC_TOKENS.values()]))
    return path


@pytest.fixture
def settings_for(cluster: LocalCluster, mongo_server: MongoServer, mongo_db: Database[Any], namespace: str,
                 tokens_file: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mongo_uri": mongo_uri(mongo_server, mongo_db), "auth_mode": "static", "auth_tokens_file": tokens_file,
            "watch_namespace": namespace, "operator_namespace": namespace, "kubeconfig": str(cluster.kubeconfig),
            "trigger_wait_seconds": 0.5, "mongo_timeout_ms": 1500, "auth_cache_seconds": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_api(settings_for: Callable[..., Settings], namespace: str, mongo_db: Database[Any],
             k8s: client.ApiClient, syncjob_crd: str) -> Iterator[Callable[..., Api]]:
    opened: list[TestClient] = []

    def build(mode: str = "static", **overrides: Any) -> Api:
        settings = settings_for(auth_mode=mode, **overrides)
        http = TestClient(create_app(settings))
        http.__enter__()
        opened.append(http)
        tokens = {role: token for role, (token, _, _) in STATIC_TOKENS.items()} if mode == "static" else {}
        return Api(http, tokens, namespace, mongo_db, k8s, mode)

    yield build
    for http in opened:
        http.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """The API in static token mode."""
    return make_api()


VIEWER_AND_ADMIN = (("alice", "syncjob-viewer"), ("bob", "syncjob-admin"))


def bind_roles(k8s: client.ApiClient, namespace: str,
               bindings: tuple[tuple[str, str], ...] = VIEWER_AND_ADMIN) -> None:
    """Roles syncjob-viewer (read SyncJobs) and syncjob-admin (also patch them) in the namespace, bound to users as
    `bindings` says (by default alice viewer, bob admin; nobody has no binding)."""
    rbac = client.RbacAuthorizationV1Api(k8s)
    read = ["get", "list", "watch"]
    for role, verbs in (("syncjob-viewer", read), ("syncjob-admin", [*read, "patch"])):
        rbac.create_namespaced_role(namespace, {
            "metadata": {"name": role},
            "rules": [{"apiGroups": [names.GROUP], "resources": [names.PLURAL], "verbs": verbs}],
        })
    for user, role in bindings:
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        })
    authz = client.AuthorizationV1Api(k8s)

    def allowed(user: str, verb: str) -> bool:
        review = authz.create_subject_access_review({"spec": {"user": user, "resourceAttributes": {
            "group": names.GROUP, "resource": names.PLURAL, "verb": verb, "namespace": namespace}}})
        return bool(review.status.allowed)

    Api.wait_for(lambda: all(allowed(user, "patch" if role == "syncjob-admin" else "list")
                             for user, role in bindings), "RBAC bindings to take effect")


@pytest.fixture
def kube_api(make_api: Callable[..., Api], cluster: LocalCluster, k8s: client.ApiClient, namespace: str) -> Api:
    """The API in kubernetes mode: viewer = alice, admin = bob, nobody = authenticated without rights."""
    bind_roles(k8s, namespace)
    built = make_api("kubernetes")
    built.tokens.update({"viewer": cluster.identities["alice"].token, "admin": cluster.identities["bob"].token,
                         "nobody": cluster.identities["nobody"].token})
    return built
