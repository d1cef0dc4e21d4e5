"""The operator and a sync pod on the local control plane, each as its own MongoDB user, SecantusDB with --auth.

The operator runs as a real process with the operator user's URI; the sync pod (run by the test bed's pod runner,
from the Job the operator created) reads the sync user's URI from the Secret `syncjob-mongo` of its namespace, as
in a real cluster. Both record the commands they issue, which are then judged by MongoDB's per-collection rule.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient

from syncjob import mongo, names
from syncjob.runs import manual_run_id
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import Process, free_port, wait_until
from tests.conftest import make_syncjob
from tests.operator.conftest import SyncJobs, eventually
from tests.security.commands import read
from tests.security.conftest import assert_allowed_by_mongodb, uri

pytestmark = pytest.mark.integration

RECORDER = Path(__file__).with_name("commands.py")


@pytest.fixture
def operator_as_its_user(cluster: LocalCluster, k8s: client.ApiClient, namespace: str, syncjob_crd: str,
                         server: MongoServer, dbname: str, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The operator with its own user; sync pods with theirs, from the namespace's Secret. Yields the two
    command logs (operator, sync pods)."""
    operator_log, sync_log = tmp_path / "operator.jsonl", tmp_path / "sync.jsonl"
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="syncjob-mongo"),
        data={"MONGO_URI": base64.b64encode(uri(server, dbname, "sync").encode()).decode()}))
    port = free_port()
    env = {
        **os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MONGO_URI": uri(server, dbname, "operator"),
        "WATCH_NAMESPACES": namespace, "OPERATOR_NAMESPACE": namespace, "RESYNC_SECONDS": "2",
        "LEASE_RENEW_SECONDS": "2", "PYTHONUNBUFFERED": "1", "LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz",
        # The pod's command: the sync image's entrypoint, its commands recorded (a script: no `tests` import).
        "SYNC_COMMAND": json.dumps([sys.executable, str(RECORDER), str(sync_log), "--", "sync_image", "run"]),
    }
    process = Process("operator", [sys.executable, str(RECORDER), str(operator_log), "--", "syncjob_operator"],
                      tmp_path, env=env).start()

    def live() -> bool:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200

    try:
        wait_until(live, 60, "the operator's liveness endpoint", process=process)
        yield operator_log, sync_log
    finally:
        process.stop()
        if os.environ.get("SHOW_OPERATOR_LOG"):
            print(process.log_tail(200))


def test_a_manual_run_end_to_end_with_one_user_per_component(
        operator_as_its_user: tuple[Path, Path], k8s: client.ApiClient, namespace: str, root: MongoClient[Any],
        dbname: str) -> None:
    operator_log, sync_log = operator_as_its_user
    syncjobs = SyncJobs(k8s, namespace)
    syncjobs.create(make_syncjob("daily", task="daily", sources=["file"], paused=True,
                                 options={"incremental": False, "start_date": "2026-11-01"}))
    eventually(lambda: (syncjobs.ready("daily") or {}).get("status") == "True", 30, "Ready")
    syncjobs.annotate("daily", {names.REQUESTED_AT: "1"})
    run_id = manual_run_id(namespace, "daily", "1")
    db = root[dbname]

    def finished() -> dict[str, Any] | None:
        doc = db[mongo.EXECUTIONS].find_one({"_id": run_id})
        return doc if doc and doc["status"] != "running" else None

    record = eventually(finished, 90, f"record {run_id} finished")
    assert record["status"] == "success", record
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) > 0
    eventually(lambda: db[mongo.HISTORY].find_one({"job_id": "daily", "action": "trigger"}), 30, "audit entry")
    eventually(lambda: (syncjobs.get("daily").get("status") or {}).get("lastExecution"), 30, "lastExecution")

    for component, log in (("operator", operator_log), ("sync", sync_log)):
        commands, failures = read(log)
        assert not failures, (component, failures)
        assert_allowed_by_mongodb(component, commands, dbname)


def test_the_api_serves_and_mutates_as_its_user(cluster: LocalCluster, k8s: client.ApiClient, namespace: str,
                                                 syncjob_crd: str, server: MongoServer, root: MongoClient[Any],
                                                 dbname: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's routes, through HTTP, with the API user: every read it serves and every write it makes."""
    import datetime as dt
    import functools

    import yaml
    from fastapi.testclient import TestClient
    from syncjob_api.core.config import Settings
    from syncjob_api.main import create_app

    from tests.api.conftest import STATIC_TOKENS, Api
    from tests.security.commands import Recorder

    recorder = Recorder()
    monkeypatch.setattr(mongo, "MongoClient", functools.partial(MongoClient, event_listeners=[recorder]))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump([{"token": t, "user": u, "role": r} for t, u, r in STATIC_TOKENS.values()]))
    settings = Settings(mongo_uri=uri(server, dbname, "api"), auth_mode="static", auth_tokens_file=tokens,
                        watch_namespace=namespace, operator_namespace=namespace, kubeconfig=str(cluster.kubeconfig),
                        trigger_wait_seconds=0.5, mongo_timeout_ms=3000, auth_cache_seconds=0,
                        execution_retention_days=90)
    with TestClient(create_app(settings)) as http:
        api = Api(http, {role: token for role, (token, _, _) in STATIC_TOKENS.items()}, namespace, root[dbname], k8s,
                  "static")  # api.db is root's: the test's own seeding and checks
        api.create_syncjob("alpha")
        old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)
        for job, status in (("alpha-done", "success"), ("alpha-stuck", "running"), ("alpha-live", "running")):
            api.add_execution(job, "alpha", status=status, now=old)

        for path in ("/jobs", "/jobs/alpha", "/jobs/alpha/executions", "/jobs/alpha/execution-stats",
                     "/jobs/alpha/history", "/executions", "/history", "/stats", "/health"):
            assert api.get(path).status_code == 200, path
        assert api.get("/metrics").status_code == 200
        assert api.put("/jobs/alpha/metadata", json={"display_name": "Alpha"}).status_code == 200
        assert api.post("/jobs/alpha/pause").status_code == 200
        assert api.post("/jobs/alpha/resume").status_code == 200
        assert api.post(f"/executions/{api.run_id('alpha-live')}/cancel").status_code == 200
        assert api.post(f"/executions/{api.run_id('alpha-stuck')}/mark-failed").status_code == 200
        assert api.delete(f"/executions/{api.run_id('alpha-done')}").status_code == 200

    db = root[dbname]
    assert db[mongo.EXECUTIONS].find_one({"_id": api.run_id("alpha-stuck")})["status"] == "failed"  # type: ignore[index]
    assert db[mongo.EXECUTIONS].find_one({"_id": api.run_id("alpha-live")})["cancel_requested"] is True  # type: ignore[index]
    assert db[mongo.EXECUTIONS].find_one({"_id": api.run_id("alpha-done")}) is None
    assert db[mongo.EXECUTION_TOMBSTONES].find_one({"_id": api.run_id("alpha-done")}) is not None
    assert db[mongo.METADATA].find_one({"job_id": "alpha"})["display_name"] == "Alpha"  # type: ignore[index]
    actions = {e["action"] for e in db[mongo.HISTORY].find({"status": "success"})}
    assert {"metadata", "pause", "resume", "cancel", "mark-failed", "delete"} <= actions
    ttl = db[mongo.EXECUTIONS].index_information()["timestamp_-1"]["expireAfterSeconds"]
    assert ttl == 90 * 86400, "start-up created the indexes as the API user"
    assert not recorder.failures, recorder.failures
    assert_allowed_by_mongodb("api", recorder.commands, dbname)
