"""The samples applied to two namespaces, users bound to one or both, and the whole API surface read and written as
each of them, in both auth modes, with WATCH_NAMESPACE empty (all namespaces).

Kubernetes mode: alice may patch SyncJobs in staging and only read them in prod, bob may patch them in prod, nobody
has no binding, root is the test bed's cluster admin. Static mode: the tokens file scopes tokens to namespaces
(alice: admin in staging; carol: viewer in both; bob: admin in prod; nobody: viewer in a namespace that has
nothing; root: admin everywhere).

Every read answers with the caller's namespaces only (records, error messages, audit users, counts), every write is
decided in the target's namespace, and a job name that exists in two namespaces the caller sees needs `namespace=`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bson import ObjectId
from fastapi.testclient import TestClient
from kubernetes import client
from pymongo.database import Database
from syncjob_api.core.config import Settings
from syncjob_api.main import create_app

from syncjob import audit, mongo, names
from syncjob.executions import identity
from syncjob.runs import run_id
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from tests.api.conftest import Api as FixtureApi
from tests.api.conftest import bind_roles, mongo_uri

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
SAMPLE_COUNT = 16
SUFFIX = uuid.uuid4().hex[:6]
STAGING, PROD = f"md-staging-{SUFFIX}", f"md-prod-{SUFFIX}"
BOTH = (STAGING, PROD)
JOB = "tushare-quotes-sync"  # in both namespaces
T0 = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class User:
    name: str
    token: str
    reads: frozenset[str]  # of the two namespaces
    writes: frozenset[str]
    cluster_wide: bool = False  # sees everything, the incumbent's records (no namespace) included


@pytest.fixture(scope="module")
def world(cluster: LocalCluster, k8s: client.ApiClient, syncjob_crd: str) -> Iterator[None]:
    """Two namespaces with the samples applied, and alice and bob bound as the module docstring says."""
    core = client.CoreV1Api(k8s)
    bindings = {STAGING: (("alice", "syncjob-admin"),), PROD: (("alice", "syncjob-viewer"), ("bob", "syncjob-admin"))}
    for ns in BOTH:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        cluster.kubectl("apply", "-k", str(SAMPLES), "-n", ns)
        bind_roles(k8s, ns, bindings[ns])
    yield
    for ns in BOTH:
        core.delete_namespace(ns, propagation_policy="Background")


def _static_users(tmp: Path) -> tuple[Path, dict[str, User]]:
    def token(name: str) -> str:
        return f"{name}-{uuid.uuid4().hex}"

    users = {
        "alice": User("alice", token("alice"), frozenset({STAGING}), frozenset({STAGING})),
        "carol": User("carol", token("carol"), frozenset(BOTH), frozenset()),
        "bob": User("bob", token("bob"), frozenset({PROD}), frozenset({PROD})),
        "nobody": User("nobody", token("nobody"), frozenset(), frozenset()),
        "root": User("root", token("root"), frozenset(BOTH), frozenset(BOTH), cluster_wide=True),
    }
    entries = [
        {"token": users["alice"].token, "user": "alice", "role": "admin", "namespaces": [STAGING]},
        {"token": users["carol"].token, "user": "carol", "role": "viewer", "namespaces": list(BOTH)},
        {"token": users["bob"].token, "user": "bob", "role": "admin", "namespaces": [PROD]},
        {"token": users["nobody"].token, "user": "nobody", "role": "viewer", "namespaces": ["nowhere"]},
        {"token": users["root"].token, "user": "root", "role": "admin"},
    ]
    path = tmp / "tokens.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path, users


def _kube_users(cluster: LocalCluster) -> dict[str, User]:
    ids = cluster.identities
    return {
        "alice": User("alice", ids["alice"].token, frozenset(BOTH), frozenset({STAGING})),
        "bob": User("bob", ids["bob"].token, frozenset({PROD}), frozenset({PROD})),
        "nobody": User("nobody", ids["nobody"].token, frozenset(), frozenset()),
        "root": User(ids["admin"].user, ids["admin"].token, frozenset(BOTH), frozenset(BOTH), cluster_wide=True),
    }


class Api:
    def __init__(self, http: TestClient, db: Database[Any], k8s: client.ApiClient, users: dict[str, User]) -> None:
        self.http, self.db, self.k8s, self.users = http, db, k8s, users

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.users[who].token}"}
        return self.http.request(method, f"/api/scheduler{path}", headers=headers, **kwargs)

    def syncjob(self, namespace: str, name: str) -> dict[str, Any]:
        return client.CustomObjectsApi(self.k8s).get_namespaced_custom_object(  # type: ignore[no-any-return]
            names.GROUP, names.VERSION, namespace, names.PLURAL, name)


def _seed(db: Database[Any]) -> None:
    coll = db[mongo.EXECUTIONS]
    for ns in BOTH:
        _seed_namespace(db, ns)
        doc = identity(run_id=run_id(ns, "akshare-quotes-sync-29400001"), job_id="akshare-quotes-sync",
                       namespace=ns, job="akshare-quotes-sync-29400001", trigger="schedule", force=False,
                       scheduled_time=T0, created=T0)
        doc.update(status="failed", progress=0, execution_time=1.0, error_message=f"boom in {ns}",
                   traceback=f"Traceback in {ns}")
        coll.insert_one(doc)
        audit.write(db, job_id=JOB, namespace=ns, action="pause", status="success", user=f"admin-of-{ns}",
                    via="kubectl", target=JOB)
    # The incumbent's: an ObjectId, no namespace, naive times meaning UTC+8.
    coll.insert_one({"_id": ObjectId(), "job_id": "tushare_quotes_sync",
                     "job_name": "实时行情同步", "status": "success", "execution_time": 3.25,
                     "timestamp": dt.datetime(2026, 3, 1, 9, 30), "is_manual": False})
    db[mongo.HISTORY].insert_one({"job_id": "tushare_quotes_sync", "action": "trigger", "status": "success",
                                  "timestamp": dt.datetime(2026, 3, 1, 9, 0)})


@pytest.fixture(params=["static", "kubernetes"])
def api(request: pytest.FixtureRequest, world: None, cluster: LocalCluster, k8s: client.ApiClient,
        mongo_server: MongoServer, mongo_db: Database[Any], tmp_path: Path) -> Iterator[Api]:
    mode = request.param
    tokens, users = _static_users(tmp_path)
    if mode == "kubernetes":
        users = _kube_users(cluster)
    settings = Settings(mongo_uri=mongo_uri(mongo_server, mongo_db), auth_mode=mode, auth_tokens_file=tokens,
                        watch_namespace="", operator_namespace=STAGING, kubeconfig=str(cluster.kubeconfig),
                        trigger_wait_seconds=0, mongo_timeout_ms=1500, auth_cache_seconds=5)
    _seed(mongo_db)
    with TestClient(create_app(settings)) as http:
        built = Api(http, mongo_db, k8s, users)
        # Both namespaces' samples are served (the cache lists every namespace).
        FixtureApi.wait_for(lambda: sum(1 for j in built.call("GET", "/jobs", "root").json()["data"]
                          if j["namespace"] in BOTH) == 2 * SAMPLE_COUNT, "the samples to be served", timeout=60)
        yield built


READ_PATHS = ["/jobs", "/executions", "/history", "/stats", "/health"]
JOB_PATHS = [f"/jobs/{JOB}", f"/jobs/{JOB}/executions", f"/jobs/{JOB}/history", f"/jobs/{JOB}/execution-stats"]


def test_every_read_returns_only_the_namespaces_the_caller_may_list(api: Api) -> None:
    for who, user in api.users.items():
        if not user.reads:
            for path in [*READ_PATHS, *JOB_PATHS]:
                r = api.call("GET", path, who)
                assert r.status_code == 403, (who, path, r.text)
            continue
        jobs = api.call("GET", "/jobs", who).json()["data"]
        ours = [j for j in jobs if j["namespace"] in BOTH]
        assert {j["namespace"] for j in ours} == user.reads, who
        assert len(ours) == SAMPLE_COUNT * len(user.reads)

        page = api.call("GET", "/executions", who, params={"limit": 200}).json()["data"]
        spaces = {i["namespace"] for i in page["items"]}
        assert spaces == set(user.reads) | ({None} if user.cluster_wide else set()), who
        assert page["total"] == 4 * len(user.reads) + (1 if user.cluster_wide else 0)
        same_name = api.call("GET", "/executions", who, params={"job_id": JOB, "limit": 200}).json()["data"]
        assert {i["namespace"] for i in same_name["items"]} == set(user.reads) | (
            {None} if user.cluster_wide else set())
        for ns in BOTH:
            narrowed = api.call("GET", "/executions", who, params={"namespace": ns}).json()["data"]
            assert narrowed["total"] == (4 if ns in user.reads else 0), (who, ns)

        history = api.call("GET", "/history", who, params={"limit": 200}).json()["data"]["history"]
        assert {h["namespace"] for h in history} == set(user.reads) | ({None} if user.cluster_wide else set())
        assert {h["user"] for h in history} - {None} == {f"admin-of-{ns}" for ns in user.reads}

        stats = api.call("GET", "/stats", who).json()["data"]
        health = api.call("GET", "/health", who).json()["data"]
        if user.cluster_wide:  # it also sees other tests' SyncJobs, whose namespaces may be going away meanwhile
            assert stats["total_jobs"] >= len(ours) and health["components"]["cache"]["jobs"] >= len(ours)
        else:  # in kubernetes mode alice and bob are also bound in other tests' namespaces, which may be going away
            # meanwhile: the counts must agree with a list read at the same moment (again if one changed between)
            def counts_agree(who: str = who) -> bool:
                listed = len(api.call("GET", "/jobs", who).json()["data"])
                total = api.call("GET", "/stats", who).json()["data"]["total_jobs"]
                cached = api.call("GET", "/health", who).json()["data"]["components"]["cache"]["jobs"]
                return bool(total == listed == cached)
            FixtureApi.wait_for(counts_agree, f"{who}'s job counts to agree with the jobs listed")
        assert stats["executions_running"] == 2 * len(user.reads)
        running = api.call("GET", "/dashboard/running", who).json()["data"]  # the live feed's polling fallback
        assert len(running) == 2 * len(user.reads) and {r["namespace"] for r in running} == user.reads, who

        everything = "".join(api.call("GET", p, who, params={"limit": 200}).text for p in READ_PATHS)
        for ns in set(BOTH) - user.reads:  # another namespace's errors, tracebacks and users never show
            assert f"boom in {ns}" not in everything and f"admin-of-{ns}" not in everything, (who, ns)

        for path in JOB_PATHS:
            r = api.call("GET", path, who)
            if len(user.reads) == 2:
                assert r.status_code == 409, (who, path, r.text)
                assert "Ambiguous job id" in r.json()["message"] and "namespace=" in r.json()["message"]
            else:
                assert r.status_code == 200, (who, path, r.text)
            for ns in BOTH:
                r = api.call("GET", path, who, params={"namespace": ns})
                assert r.status_code == (200 if ns in user.reads else 403), (who, path, ns, r.text)
        for ns in user.reads:
            job = api.call("GET", f"/jobs/{JOB}", who, params={"namespace": ns}).json()["data"]
            assert job["namespace"] == ns and job["name"] == "Tushare-实时行情同步"
            runs = api.call("GET", f"/jobs/{JOB}/executions", who, params={"namespace": ns}).json()["data"]
            assert {i["namespace"] for i in runs["items"]} == {ns} and runs["total"] == 2
            stats = api.call("GET", f"/jobs/{JOB}/execution-stats", who, params={"namespace": ns}).json()["data"]
            assert (stats["total"], stats["success"], stats["running"]) == (2, 1, 1)
            entries = api.call("GET", f"/jobs/{JOB}/history", who, params={"namespace": ns}).json()["data"]
            assert [h["user"] for h in entries["history"]] == [f"admin-of-{ns}"]


def _expect(r: Any, allowed: bool, what: str) -> None:
    assert r.status_code == (200 if allowed else 403), (what, r.status_code, r.text)


def test_every_write_is_checked_in_the_target_namespace(api: Api) -> None:
    for who, user in api.users.items():
        for ns in BOTH:
            may = ns in user.writes
            q = {"namespace": ns}
            _expect(api.call("POST", f"/jobs/{JOB}/pause", who, params=q), may, f"{who} pause {ns}")
            assert api.syncjob(ns, JOB)["spec"].get("paused", False) is may
            _expect(api.call("POST", f"/jobs/{JOB}/resume", who, params=q), may, f"{who} resume {ns}")
            assert api.syncjob(ns, JOB)["spec"].get("paused", False) is False
            _expect(api.call("POST", "/jobs/tushare-status-check/trigger", who, params=q), may, f"{who} trigger")
            r = api.call("PUT", f"/jobs/{JOB}/metadata", who, params=q, json={"display_name": f"{who} {ns}"})
            _expect(r, may, f"{who} metadata {ns}")
            _expect(api.call("POST", f"/executions/{ns}.{JOB}-mrunning/cancel", who), may, f"{who} cancel {ns}")
            r = api.call("POST", f"/executions/{ns}.baostock-status-check-mrunning/mark-failed", who,
                         params={"reason": "进程已手动终止"})
            _expect(r, may, f"{who} mark-failed {ns}")
            _expect(api.call("DELETE", f"/executions/{ns}.{JOB}-29400000", who), may, f"{who} delete {ns}")
            if not may:
                denied = api.db[mongo.HISTORY].count_documents({"user": user.name, "status": "denied",
                                                                "namespace": ns})
                assert denied == 7, (who, ns)  # pause, resume, trigger, metadata, cancel, mark-failed, delete
                assert api.db[mongo.EXECUTIONS].find_one({"_id": f"{ns}.{JOB}-mrunning"})["status"] == "running"
            else:  # these records change only once: put them back for the next writer
                records = api.db[mongo.EXECUTIONS]
                assert records.find_one({"_id": f"{ns}.baostock-status-check-mrunning"})["reason"] == "MarkedFailed"
                assert records.find_one({"_id": f"{ns}.{JOB}-29400000"}) is None
                api.db[mongo.EXECUTION_TOMBSTONES].delete_many({})
                records.delete_many({"namespace": ns})
                api.db[mongo.HISTORY].delete_many({"user": user.name})
                _seed_namespace(api.db, ns)


def _seed_namespace(db: Database[Any], ns: str) -> None:
    coll = db[mongo.EXECUTIONS]
    for job, job_id, status in ((f"{JOB}-29400000", JOB, "success"), (f"{JOB}-mrunning", JOB, "running"),
                                ("baostock-status-check-mrunning", "baostock-status-check", "running")):
        doc = identity(run_id=run_id(ns, job), job_id=job_id, namespace=ns, job=job, trigger="schedule",
                       force=False, scheduled_time=T0, created=T0)
        doc.update(status=status, progress=0)
        if status == "success":
            doc.update(execution_time=2.5, return_value={"updated": 10})
        coll.insert_one(doc)


def test_a_same_named_job_needs_a_namespace_only_where_the_caller_sees_both(api: Api) -> None:
    for who, user in api.users.items():
        if not user.writes:
            continue
        r = api.call("POST", f"/jobs/{JOB}/pause", who)
        if len(user.reads) == 2:
            assert r.status_code == 409 and "Ambiguous job id" in r.json()["message"], (who, r.text)
            assert all(not api.syncjob(ns, JOB)["spec"].get("paused", False) for ns in BOTH)
            failed = api.db[mongo.HISTORY].find_one({"user": user.name, "action": "pause"})
            assert failed is not None and failed["status"] == "failed"
        else:  # the one it sees
            (ns,) = user.reads
            assert r.status_code == 200 and r.json()["data"]["namespace"] == ns, (who, r.text)
            assert api.syncjob(ns, JOB)["spec"]["paused"] is True
            other = next(n for n in BOTH if n != ns)
            assert not api.syncjob(other, JOB)["spec"].get("paused", False)
            assert api.call("POST", f"/jobs/{JOB}/resume", who).status_code == 200


def test_each_namespace_has_its_own_metadata_over_the_incumbents(api: Api) -> None:
    """An admin's display name in one namespace never renames the other's job; the incumbent's document (keyed by
    its underscore id, no namespace) shows where a namespace has none of its own."""
    api.db[mongo.METADATA].insert_one({"job_id": "tushare_quotes_sync", "display_name": "实时行情同步",
                                       "description": "the incumbent's"})
    api.http.app.state.ctx.metadata.invalidate()

    def name(ns: str) -> str:
        return str(api.call("GET", f"/jobs/{JOB}", "root", params={"namespace": ns}).json()["data"]["name"])

    assert name(STAGING) == name(PROD) == "实时行情同步（Tushare）"  # noqa: RUF001 (the incumbent's brackets)
    r = api.call("PUT", f"/jobs/{JOB}/metadata", "root", params={"namespace": STAGING},
                 json={"display_name": "预发-行情"})
    assert r.status_code == 200 and r.json()["data"]["namespace"] == STAGING
    assert name(STAGING) == "预发-行情（Tushare）"  # noqa: RUF001
    assert name(PROD) == "实时行情同步（Tushare）"  # noqa: RUF001
    listed = {(j["namespace"], j["id"]): j for j in api.call("GET", "/jobs", "root").json()["data"]}
    assert listed[(STAGING, JOB)]["display_name"] == "预发-行情"
    assert listed[(PROD, JOB)]["display_name"] == "实时行情同步"
    docs = {(d.get("namespace"), d["job_id"]) for d in api.db[mongo.METADATA].find()}
    assert docs == {(None, "tushare_quotes_sync"), (STAGING, JOB)}
    # The previous version's unique index on job_id alone, still there: the first write it refuses drops it.
    api.db[mongo.METADATA].create_index([("job_id", 1)], unique=True)
    r = api.call("PUT", f"/jobs/{JOB}/metadata", "root", params={"namespace": PROD}, json={"description": "生产"})
    assert r.status_code == 200, r.text
    assert [i["key"] for i in api.db[mongo.METADATA].index_information().values() if i.get("unique")] == [
        [("namespace", 1), ("job_id", 1)]]
    # Prod's own document now stands in for the incumbent's (its display name is the spec's again).
    prod = api.call("GET", f"/jobs/{JOB}", "root", params={"namespace": PROD}).json()["data"]
    assert (prod["description"], prod["display_name"]) == ("生产", "Tushare-实时行情同步")
    assert name(STAGING) == "预发-行情（Tushare）"  # noqa: RUF001
