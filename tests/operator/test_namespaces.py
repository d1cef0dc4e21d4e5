"""Two namespaces, the same SyncJob names, the same minute, the same tokens: every run has a record of its own.

Staging and production side by side in one cluster: a tick, a trigger with the same token, and a cancel land in
both at once, one namespace's runs fail while the other's succeed, and no record, verdict or cancel crosses over.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo.database import Database

from syncjob import names
from syncjob.runs import manual_run_id
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually, mongo_uri_for
from tests.operator.test_honest_runs import real_sync, record, working


@pytest.fixture
def second_namespace(k8s: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.slow
def test_two_namespaces_with_the_same_names_keep_their_own_runs_verdicts_and_cancels(
        cluster: LocalCluster, k8s: client.ApiClient, namespace: str, second_namespace: str, syncjob_crd: str,
        mongo_server: MongoServer, mongo_db: Database[Any], tmp_path: Path) -> None:
    prod, staging = namespace, second_namespace
    uri = mongo_uri_for(mongo_server, mongo_db)
    for ns in (prod, staging):
        client.CoreV1Api(k8s).create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="syncjob-mongo"),
            data={"MONGO_URI": base64.b64encode(uri.encode()).decode()}))
    op = OperatorProcess(cluster, prod, uri, tmp_path / "operator-logs", ["syncjob-sync", "run"],
                         {"WATCH_NAMESPACES": f"{prod},{staging}"}).start()
    try:
        sj = {ns: SyncJobs(k8s, ns) for ns in (prod, staging)}
        every_minute = {"schedule": "* * * * *", "timeZone": "UTC", "startingDeadlineSeconds": 30,
                        "concurrencyPolicy": "Allow"}
        # Same names in both; staging's source folder is missing, so its runs fail while production's succeed.
        sj[prod].create(real_sync("tushare-quotes-sync", **every_minute))
        sj[staging].create(real_sync("tushare-quotes-sync", **every_minute,
                                     options={"file_dir": "/nonexistent/staging"}))
        for ns in (prod, staging):
            sj[ns].create(real_sync("slow", delay=2, concurrencyPolicy="Allow"))
        for ns in (prod, staging):
            for name in ("tushare-quotes-sync", "slow"):
                eventually(lambda s=sj[ns], n=name: (s.ready(n) or {}).get("status") == "True", 30, f"{ns}/{name}")

        # The same token in both namespaces at once.
        for ns in (prod, staging):
            sj[ns].annotate("tushare-quotes-sync", {names.REQUESTED_AT: "same-token"})
        assert record(mongo_db, manual_run_id(prod, "tushare-quotes-sync", "same-token"), "success")
        assert record(mongo_db, manual_run_id(staging, "tushare-quotes-sync", "same-token"), "failed")

        # A cancel in one namespace stops only that namespace's run.
        for ns in (prod, staging):
            sj[ns].annotate("slow", {names.REQUESTED_AT: "go"})
        for ns in (prod, staging):
            working(mongo_db, manual_run_id(ns, "slow", "go"))
        sj[staging].annotate("slow", {names.CANCEL_AT: "stop"})
        assert record(mongo_db, manual_run_id(staging, "slow", "go"), "cancelled")["reason"] == "Cancelled"
        assert record(mongo_db, manual_run_id(prod, "slow", "go"), "success").get("cancel_requested") is not True

        # The same tick in both: two records of the same Job name, each with its own namespace's verdict.
        def ticks() -> dict[str, dict[str, Any]] | None:
            by_job: dict[str, dict[str, dict[str, Any]]] = {}
            for d in mongo_db["scheduler_executions"].find({"job_id": "tushare-quotes-sync", "trigger": "schedule",
                                                            "status": {"$ne": "running"}}):
                by_job.setdefault(d["k8s_job"], {})[d["namespace"]] = d
            return next((pair for pair in by_job.values() if {prod, staging} <= set(pair)), None)
        both = eventually(ticks, 130, "the same tick to end in both namespaces")
        assert (both[prod]["status"], both[staging]["status"]) == ("success", "failed")
        assert both[prod]["_id"] == f"{prod}.{both[prod]['k8s_job']}" != both[staging]["_id"]
        runs = list(mongo_db["scheduler_executions"].find({}))
        assert all(r["_id"].startswith(f"{r['namespace']}.") for r in runs)
        assert not [r for r in runs if r["status"] == "missed"]  # neither namespace hides the other's ticks
    finally:
        op.stop()
