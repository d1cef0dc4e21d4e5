"""Records written by the previous version (run id = Job name, execution_time in ms) keep working after start-up."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from syncjob import mongo
from syncjob.migrations import migrate, migrate_metadata

T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)
INCUMBENT_NAME = "实时行情同步（Tushare）"  # noqa: RUF001 (the incumbent's full-width brackets)


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


def test_metadata_keyed_by_job_alone_becomes_keyed_by_namespace_and_job(mongo_db: Database[Any]) -> None:
    coll = mongo_db[mongo.METADATA]
    # As the previous version left it: a unique index on job_id, one document per job name whatever the namespace.
    coll.create_index([("job_id", 1)], unique=True)
    coll.insert_many([
        {"job_id": "tushare-quotes-sync", "namespace": "md-prod", "display_name": "Prod quotes"},
        {"job_id": "tushare_quotes_sync", "display_name": INCUMBENT_NAME},  # the incumbent's
    ])
    mongo.ensure_indexes(mongo_db, mongo.SCHEDULER_COLLECTIONS)
    assert migrate_metadata(mongo_db) is True
    assert migrate_metadata(mongo_db) is False  # idempotent: already dropped
    # Now the same job name has a document per namespace, and the old ones are kept as they were.
    coll.insert_one({"job_id": "tushare-quotes-sync", "namespace": "md-staging", "display_name": "Staging quotes"})
    assert {(d.get("namespace"), d["display_name"]) for d in coll.find({}, {"_id": 0})} == {
        ("md-prod", "Prod quotes"), ("md-staging", "Staging quotes"), (None, INCUMBENT_NAME)}
    unique = [info["key"] for info in coll.index_information().values() if info.get("unique")]
    assert unique == [[("namespace", 1), ("job_id", 1)]]
    try:
        coll.insert_one({"job_id": "tushare-quotes-sync", "namespace": "md-prod", "display_name": "again"})
    except DuplicateKeyError:
        pass
    else:
        raise AssertionError("a second document of the same namespace and job was accepted")
    # Only-null namespace lookups match the incumbent's document (missing field), as the API's fallback does.
    assert coll.count_documents({"namespace": {"$in": [None]}}) == 1


def test_a_record_written_under_the_new_id_before_the_migration_does_not_erase_the_old_verdict(
        mongo_db: Database[Any]) -> None:
    coll = mongo_db[mongo.EXECUTIONS]
    coll.insert_many([
        {"_id": "job-2", "job_id": "job", "namespace": "ns", "status": "success", "timestamp": T0,
         "execution_time": 2000, "return_value": {"inserted": 5}},
        # written by the new operator before the migration reached job-2: the scan took it for a miss
        {"_id": "ns.job-2", "job_id": "job", "namespace": "ns", "k8s_job": "job-2", "status": "missed",
         "schema_version": 2, "started_at": None},
        {"_id": "job-3", "job_id": "job", "namespace": "ns", "status": "failed", "timestamp": T0,
         "execution_time": 1000},
        {"_id": "ns.job-3", "job_id": "job", "namespace": "ns", "k8s_job": "job-3", "status": "running",
         "schema_version": 2, "started_at": T0},
    ])
    assert migrate(mongo_db) == 2
    assert coll.find_one({"_id": "ns.job-2"})["status"] == "success"
    assert coll.find_one({"_id": "ns.job-2"})["return_value"] == {"inserted": 5}
    assert coll.find_one({"_id": "ns.job-3"})["status"] == "failed"
    assert coll.count_documents({"_id": {"$in": ["job-2", "job-3"]}}) == 0
