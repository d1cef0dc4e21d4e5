"""The audit writer (syncjob.audit) on the test bed's MongoDB-protocol server."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from syncjob import audit, mongo


def test_a_keyed_entry_is_written_once(mongo_db: Database[Any]) -> None:
    entry = {"job_id": "quotes", "namespace": "md", "action": "trigger", "user": "kubectl-annotate",
             "via": "kubectl", "target": "md.quotes-x"}
    assert audit.write(mongo_db, status="success", key="trigger/md.quotes-x", **entry)
    assert not audit.write(mongo_db, status="failed", key="trigger/md.quotes-x", **entry)
    assert [d["status"] for d in mongo_db[mongo.HISTORY].find()] == ["success"]


def test_an_entry_written_ahead_is_pending_until_its_outcome_and_keeps_the_first(mongo_db: Database[Any]) -> None:
    key = audit.begin(mongo_db, job_id="quotes", namespace=None, action="pause", user="adam", via="api",
                      target="quotes")
    assert mongo_db[mongo.HISTORY].find_one({"_id": key})["status"] == audit.PENDING
    assert audit.finish(mongo_db, key, status="success", job_id="quotes", namespace="md", target="quotes",
                        details={"paused": True})
    assert not audit.finish(mongo_db, key, status="failed", job_id="quotes", namespace="md", target="quotes",
                            error_message="late")
    doc = mongo_db[mongo.HISTORY].find_one({"_id": key})
    assert (doc["status"], doc["namespace"], doc["details"], doc["user"]) == ("success", "md", {"paused": True},
                                                                              "adam")
    assert doc["finished_at"] >= doc["timestamp"]
