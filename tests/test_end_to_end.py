"""Across the components: the API asks, the operator acts, the sync pod runs for real, the API shows the result."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pymongo.database import Database

from syncjob import mongo
from syncjob.runs import manual_job_name, manual_run_id, split_run_id
from tests.api.conftest import STATIC_TOKENS, Api, api, make_api, settings_for, tokens_file  # noqa: F401 - fixtures
from tests.conftest import make_syncjob
from tests.operator.conftest import (  # noqa: F401 - fixtures
    OperatorProcess,
    SyncJobs,
    eventually,
    operator,
    operator_env,
    sync_command,
    syncjobs,
)


def test_a_trigger_through_the_api_runs_exactly_one_real_sync(operator: OperatorProcess, syncjobs: SyncJobs,
                                                              api: Api, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("daily-e2e", task="daily", sources=["file"], schedule="0 16 * * 1-5"))
    eventually(lambda: (syncjobs.ready("daily-e2e") or {}).get("status") == "True", 30, "Ready")
    eventually(lambda: api.get("/jobs/daily-e2e").status_code == 200, 30, "the API's cache")

    answer = api.post("/jobs/daily_e2e/trigger")  # the incumbent's underscore id names the same job
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    run_id = data["run_id"]
    assert run_id == manual_run_id(api.namespace, "daily-e2e", data["token"])

    def finished() -> dict[str, Any] | None:
        items = api.get("/jobs/daily-e2e/executions").json()["data"]["items"]
        return next((i for i in items if i["_id"] == run_id and i["status"] != "running"), None)
    record = eventually(finished, 90, "the run to finish")
    assert record["status"] == "success", record
    assert record["source_used"] == "file" and record["is_manual"] is True
    assert [j.metadata.name for j in syncjobs.jobs()] == [manual_job_name("daily-e2e", data["token"])]
    assert mongo_db["stock_daily_quotes"].count_documents({}) > 0
    triggers = api.get("/jobs/daily-e2e/history").json()["data"]["history"]
    assert [(h["action"], h["via"]) for h in triggers] == [("trigger", "api")]  # audited once, by the API

    status = eventually(lambda: (s := syncjobs.get("daily-e2e")["status"]).get("lastExecution") and s, 30,
                        "lastExecution")
    assert status["lastExecution"]["status"] == "success" and status["lastHandledRequestedAt"] == data["token"]


def test_concurrent_api_triggers_each_name_a_run_with_exactly_one_job_and_record(
        operator: OperatorProcess, syncjobs: SyncJobs, api: Api, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("burst-e2e", task="daily", sources=["file"], schedule="0 16 * * 1-5",
                                 concurrencyPolicy="Allow"))
    eventually(lambda: (syncjobs.ready("burst-e2e") or {}).get("status") == "True", 30, "Ready")
    eventually(lambda: api.get("/jobs/burst-e2e").status_code == 200, 30, "the API's cache")

    def trigger(_: int) -> httpx.Response:
        return api.post("/jobs/burst-e2e/trigger")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(trigger, range(8)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    answered = {a.json()["data"]["run_id"] for a in answers}
    wanted = {split_run_id(r)[1] for r in answered}  # type: ignore[index]

    def every_run_has_its_job_and_record() -> bool:
        jobs = {j.metadata.name for j in syncjobs.jobs()}
        records = {d["_id"] for d in mongo_db[mongo.EXECUTIONS].find({"job_id": "burst-e2e"}, {"_id": 1})}
        return wanted <= jobs and answered <= records
    eventually(every_run_has_its_job_and_record, 60, "a Job and a record for every answered run")
    assert {j.metadata.name for j in syncjobs.jobs()} == wanted  # exactly one Job per answered run, no other
    records = list(mongo_db[mongo.EXECUTIONS].find({"job_id": "burst-e2e"}, {"_id": 1}))
    assert sorted(d["_id"] for d in records) == sorted(answered)  # exactly one record per answered run


def test_a_kubectl_cancel_after_an_api_trigger_is_credited_to_kubectl_not_to_the_api_user(
        operator: OperatorProcess, syncjobs: SyncJobs, api: Api, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("audited", task="daily", sources=["file"], schedule="0 16 * * 1-5",
                                 options={"codes": ["600000.SH", "000001.SZ", "300750.SZ"], "batch_size": 1,
                                          "concurrency": 1, "file_delay_seconds": 3, "heartbeat_seconds": 1}))
    eventually(lambda: (syncjobs.ready("audited") or {}).get("status") == "True", 30, "Ready")
    eventually(lambda: api.get("/jobs/audited").status_code == 200, 30, "the API's cache")
    answer = api.post("/jobs/audited/trigger")  # by the admin, through the API: requested-by names them
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["data"]["run_id"]
    eventually(lambda: (mongo_db[mongo.EXECUTIONS].find_one({"_id": run_id}) or {}).get("status") == "running", 60,
               "the run to start")
    # Someone with kubectl cancels it, and also writes a requested-by naming somebody else.
    syncjobs.annotate("audited", {"sync.tradingagents.io/cancel-at": "bob-1",
                                  "sync.tradingagents.io/requested-by": "someone-else"})
    record = eventually(lambda: (r := mongo_db[mongo.EXECUTIONS].find_one({"_id": run_id})) and
                        r["status"] == "cancelled" and r, 60, "the run to be cancelled")
    cancels = list(mongo_db[mongo.HISTORY].find({"job_id": "audited", "action": "cancel"}))
    assert len(cancels) == 1 and cancels[0]["via"] == "kubectl", cancels
    assert cancels[0]["user"].startswith("field-manager:"), cancels[0]  # the field manager, named as one
    assert record["cancel_requested_by"] == cancels[0]["user"]
