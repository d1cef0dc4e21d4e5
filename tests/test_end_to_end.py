"""Across the components: the API asks, the operator acts, the sync pod runs for real, the API shows the result."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from syncjob.runs import manual_run_id
from tests.api.conftest import Api, api, make_api, settings_for, tokens_file  # noqa: F401 - fixtures
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
    eventually(lambda: api.get("/jobs/daily-e2e").status_code == 200, 10, "the API's cache")

    answer = api.post("/jobs/daily_e2e/trigger")  # the incumbent's underscore id names the same job
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    run_id = data["run_id"]
    assert run_id == manual_run_id("daily-e2e", data["token"])

    def finished() -> dict[str, Any] | None:
        items = api.get("/jobs/daily-e2e/executions").json()["data"]["items"]
        return next((i for i in items if i["_id"] == run_id and i["status"] != "running"), None)
    record = eventually(finished, 90, "the run to finish")
    assert record["status"] == "success", record
    assert record["source_used"] == "file" and record["is_manual"] is True
    assert [j.metadata.name for j in syncjobs.jobs()] == [run_id]
    assert mongo_db["stock_daily_quotes"].count_documents({}) > 0
    triggers = api.get("/jobs/daily-e2e/history").json()["data"]["history"]
    assert [(h["action"], h["via"]) for h in triggers] == [("trigger", "api")]  # audited once, by the API

    status = eventually(lambda: (s := syncjobs.get("daily-e2e")["status"]).get("lastExecution") and s, 30,
                        "lastExecution")
    assert status["lastExecution"]["status"] == "success" and status["lastHandledRequestedAt"] == data["token"]
