"""Records written by the previous version (run id = Job name, execution_time in ms) keep working after start-up."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from syncjob import mongo
from syncjob.migrations import migrate

T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)


def test_schema_1_records_are_rekeyed_by_namespace_and_timed_in_seconds(mongo_db: Database[Any]) -> None:
    coll = mongo_db[mongo.EXECUTIONS]
    # As the previous version wrote them: identity fields, execution_time in ms.
    coll.insert_many([
        {"_id": "tushare-quotes-sync-29400000", "job_id": "tushare-quotes-sync", "job_name": "tushare-quotes-sync",
         "namespace": "md-prod", "status": "success", "trigger": "schedule", "is_manual": False,
         "timestamp": T0, "started_at": T0, "execution_time": 12345},
        {"_id": "tushare-quotes-sync-m0123456789", "job_id": "tushare-quotes-sync", "namespace": "md-prod",
         "status": "missed", "timestamp": T0, "execution_time": 0},
    ])
    legacy = coll.insert_one({"job_id": "tushare_quotes_sync", "status": "success", "execution_time": 3.5}).inserted_id
    assert migrate(mongo_db) == 2
    assert migrate(mongo_db) == 0  # idempotent
    new = coll.find_one({"_id": "md-prod.tushare-quotes-sync-29400000"})
    assert (new["execution_time"], new["k8s_job"], new["schema_version"], new["status"]) == (
        12.345, "tushare-quotes-sync-29400000", 2, "success")
    assert coll.find_one({"_id": "tushare-quotes-sync-29400000"}) is None
    assert coll.find_one({"_id": "md-prod.tushare-quotes-sync-m0123456789"})["execution_time"] == 0
    assert coll.find_one({"_id": ObjectId(legacy)})["execution_time"] == 3.5  # the incumbent's: untouched
