"""A SyncJob whose spec the operator cannot even parse (a CRD older than the operator, say) still has its request
tokens answered: refused at once with a record, not started whenever someone fixes the spec."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database
from syncjob_operator import records
from syncjob_operator.reconcile import Reconciler
from syncjob_operator.settings import OperatorSettings

from syncjob import names
from syncjob.runs import manual_run_id
from testbed.mongo import MongoServer
from tests.operator.conftest import mongo_uri_for


def test_a_request_on_a_spec_that_does_not_parse_is_refused_with_a_record(
        mongo_server: MongoServer, mongo_db: Database[Any]) -> None:
    uri = mongo_uri_for(mongo_server, mongo_db)
    records.prepare(uri)
    body = {"metadata": {"name": "broken", "namespace": "md", "uid": "u1", "generation": 2,
                         "annotations": {names.REQUESTED_AT: "t1"}},
            "spec": {"task": "no-such-task", "schedule": "0 16 * * 1-5"}}
    outcome = Reconciler(OperatorSettings(mongo_uri=uri)).reconcile(body, None, [])
    assert outcome.status["lastHandledRequestedAt"] == "t1"
    assert outcome.status["conditions"][0]["reason"] == "InvalidSpec"
    record = mongo_db["scheduler_executions"].find_one({"_id": manual_run_id("md", "broken", "t1")})
    assert (record["status"], record["reason"], record["trigger"]) == ("failed", "InvalidSpec", "manual")
    assert "spec.task" in record["error_message"]
    assert [e[1] for e in outcome.events].count("InvalidSpec") == 2  # the condition's and the refusal's
