"""Trigger: one request, one run. A request joins a run already requested and not yet started, concurrent requests
never overwrite each other's tokens, Forbid covers manual runs, and an invalid SyncJob is not asked to run.

No operator runs here: where it matters, a stand-in plays its part (acknowledging tokens in status, opening and
closing the run's record), and the assertions are on tokens, annotations, records and answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from kubernetes import client, watch

from syncjob import executions, names
from syncjob.executions import Writer
from syncjob.model import ExecutionStatus
from syncjob.runs import manual_job_name, manual_run_id
from tests.api.conftest import Api, acknowledge


def _annotations(api: Api, name: str) -> dict[str, str]:
    return api.syncjob(name)["metadata"].get("annotations") or {}


def _set_status(api: Api, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi(api.k8s).patch_namespaced_custom_object_status(
        names.GROUP, names.VERSION, api.namespace, names.PLURAL, name, {"status": status})


def _ident(api: Api, name: str, job_name: str) -> dict[str, Any]:
    return executions.identity(run_id=api.run_id(job_name), job_id=name, namespace=api.namespace, job=job_name,
                               trigger="manual", force=False, scheduled_time=None)


def test_a_trigger_while_a_run_is_requested_joins_that_run(api: Api) -> None:
    api.create_syncjob("alpha", concurrencyPolicy="Allow")
    first = api.post("/jobs/alpha/trigger").json()["data"]
    second = api.post("/jobs/alpha/trigger")
    assert second.status_code == 200
    joined = second.json()
    assert joined["data"]["joined"] is True and first["joined"] is False
    assert (joined["data"]["run_id"], joined["data"]["token"]) == (first["run_id"], first["token"])
    assert "joined run" in joined["message"] and "already requested" in joined["message"]
    assert _annotations(api, "alpha")[names.REQUESTED_AT] == first["token"]  # not overwritten
    entries = api.history(action="trigger")
    assert [(e["status"], e["details"]["joined"], e["details"]["run_id"]) for e in entries] == [
        ("success", False, first["run_id"]), ("success", True, first["run_id"])]
    acknowledge(api, "alpha")  # the operator started it: the next request asks for a new run
    third = api.post("/jobs/alpha/trigger").json()["data"]
    assert third["joined"] is False and third["token"] != first["token"]


def test_an_unforced_trigger_joins_a_forced_pending_run(api: Api) -> None:
    api.create_syncjob("alpha")
    forced = api.post("/jobs/alpha/trigger", params={"force": "true"}).json()["data"]
    plain = api.post("/jobs/alpha/trigger").json()
    assert plain["data"]["joined"] is True and plain["data"]["force"] is True
    assert plain["data"]["run_id"] == forced["run_id"] and "强制模式" in plain["message"]


def test_a_forced_trigger_never_joins_an_unforced_pending_run(make_api: Callable[..., Api]) -> None:
    api = make_api(trigger_force_wait_seconds=0.5)
    api.create_syncjob("alpha")
    plain = api.post("/jobs/alpha/trigger").json()["data"]
    r = api.post("/jobs/alpha/trigger", params={"force": "true"})
    assert r.status_code == 409
    assert plain["token"] in r.json()["message"] and "not forced" in r.json()["message"]
    assert _annotations(api, "alpha")[names.REQUESTED_AT] == plain["token"]
    assert names.FORCE_AT not in _annotations(api, "alpha")
    assert [e["status"] for e in api.history(action="trigger")] == ["success", "failed"]


def test_a_forced_trigger_waits_for_the_pending_run_to_start_then_asks_for_its_own(
        make_api: Callable[..., Api]) -> None:
    api = make_api(trigger_force_wait_seconds=20)  # the wait ends as soon as the token is acknowledged
    api.create_syncjob("alpha", concurrencyPolicy="Allow")
    plain = api.post("/jobs/alpha/trigger").json()["data"]
    timer = threading.Timer(0.5, acknowledge, (api, "alpha"))
    timer.start()
    r = api.post("/jobs/alpha/trigger", params={"force": "true"})
    timer.join()
    assert r.status_code == 200, r.text
    forced = r.json()["data"]
    assert forced["joined"] is False and forced["force"] is True and forced["token"] != plain["token"]
    annotations = _annotations(api, "alpha")
    assert annotations[names.REQUESTED_AT] == annotations[names.FORCE_AT] == forced["token"]


def test_forbid_refuses_a_manual_run_while_a_run_is_active(api: Api) -> None:
    api.create_syncjob("alpha", concurrencyPolicy="Forbid")
    api.add_execution("alpha-29400000", "alpha", status="running", trigger="schedule")
    for params in ({}, {"force": "true"}):
        r = api.post("/jobs/alpha/trigger", params=params)
        assert r.status_code == 409, r.text
        assert "Forbid" in r.json()["message"] and api.run_id("alpha-29400000") in r.json()["message"]
    assert names.REQUESTED_AT not in _annotations(api, "alpha")
    entries = api.history(action="trigger")
    assert [e["status"] for e in entries] == ["failed", "failed"]
    assert all("Forbid" in e["error_message"] for e in entries)

    # The record closed, but the operator still lists a run as active: still refused, naming that run.
    executions.close(api.db, api.run_id("alpha-29400000"), ExecutionStatus.SUCCESS, Writer.POD)
    _set_status(api, "alpha", {"active": [{"runId": api.run_id("alpha-29400060"), "jobName": "alpha-29400060"}]})
    r = api.post("/jobs/alpha/trigger")
    assert r.status_code == 409 and api.run_id("alpha-29400060") in r.json()["message"]

    _set_status(api, "alpha", {"active": []})
    assert api.post("/jobs/alpha/trigger").status_code == 200


@pytest.mark.parametrize("policy", ["Allow", "Replace"])
def test_allow_and_replace_accept_a_manual_run_beside_an_active_one(api: Api, policy: str) -> None:
    api.create_syncjob("alpha", concurrencyPolicy=policy)
    api.add_execution("alpha-29400000", "alpha", status="running", trigger="schedule")
    r = api.post("/jobs/alpha/trigger")
    assert r.status_code == 200 and r.json()["data"]["joined"] is False
    assert _annotations(api, "alpha")[names.REQUESTED_AT] == r.json()["data"]["token"]


def test_a_trigger_on_an_invalid_syncjob_is_422_with_the_operators_message(api: Api) -> None:
    api.create_syncjob("alpha")
    message = "schedule: '61 * * * *' is not a valid cron expression"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _set_status(api, "alpha", {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": names.REASON_INVALID_SPEC, "message": message,
         "lastTransitionTime": now, "observedGeneration": 1}]})
    r = api.post("/jobs/alpha/trigger")
    assert r.status_code == 422
    assert message in r.json()["message"] and r.json()["success"] is False
    assert names.REQUESTED_AT not in _annotations(api, "alpha")
    assert api.history(action="trigger")[0]["status"] == "failed"
    # The spec was fixed and the operator has not judged the new generation yet: the request is not refused.
    client.CustomObjectsApi(api.k8s).patch_namespaced_custom_object(
        names.GROUP, names.VERSION, api.namespace, names.PLURAL, "alpha", {"spec": {"schedule": "1 * * * *"}})
    assert api.post("/jobs/alpha/trigger").status_code == 200


class TokenWatch:
    """Every requested-at value the SyncJob ever had, from a watch (each write is one event)."""

    def __init__(self, api: Api, name: str) -> None:
        self.tokens: list[str] = []
        self.custom = client.CustomObjectsApi(api.k8s)
        self.api, self.name = api, name
        self.rv = api.syncjob(name)["metadata"]["resourceVersion"]
        self.w = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # stop() ends the stream mid-read
            self._follow()

    def _follow(self) -> None:
        for event in self.w.stream(self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION,
                                   self.api.namespace, names.PLURAL, field_selector=f"metadata.name={self.name}",
                                   resource_version=self.rv, timeout_seconds=60):
            token = (event["object"]["metadata"].get("annotations") or {}).get(names.REQUESTED_AT)
            if token and token not in self.tokens:
                self.tokens.append(token)

    def settle(self, expected: int) -> list[str]:
        Api.wait_for(lambda: len(self.tokens) >= expected, f"{expected} tokens in the watch")
        self.w.stop()
        return self.tokens


class OperatorStandIn:
    """Acknowledges each new token; under Forbid it also keeps the token's run running for a while."""

    def __init__(self, api: Api, name: str, hold_seconds: float) -> None:
        self.api, self.name, self.hold = api, name, hold_seconds
        self.handled: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            obj = self.api.syncjob(self.name)
            token = (obj["metadata"].get("annotations") or {}).get(names.REQUESTED_AT)
            if token and token != (obj.get("status") or {}).get("lastHandledRequestedAt"):
                self.handled.append(token)
                job = manual_job_name(self.name, token)
                if self.hold:
                    executions.open_run(self.api.db, _ident(self.api, self.name, job), Writer.OPERATOR)
                    acknowledge(self.api, self.name, active=[{"runId": self.api.run_id(job), "jobName": job}])
                    self.stop.wait(self.hold)
                    executions.close(self.api.db, self.api.run_id(job), ExecutionStatus.SUCCESS, Writer.POD)
                    _set_status(self.api, self.name, {"active": []})
                else:
                    acknowledge(self.api, self.name)
            self.stop.wait(0.05)

    def finish(self, expected: list[str]) -> list[str]:
        """Stop once every expected token is handled (or 30 s have passed); the tokens handled, in order."""
        with contextlib.suppress(AssertionError):  # the caller's assertion says which token was never seen
            Api.wait_for(lambda: set(expected) <= set(self.handled), "the stand-in to handle every token")
        self.stop.set()
        self.thread.join(10)
        return self.handled


@pytest.mark.parametrize("policy", ["Allow", "Forbid"])
def test_concurrent_triggers_each_name_a_run_that_will_exist(make_api: Callable[..., Api], policy: str) -> None:
    api = make_api(trigger_wait_seconds=0, trigger_force_wait_seconds=0)
    api.create_syncjob("alpha", concurrencyPolicy=policy)
    tokens = TokenWatch(api, "alpha")
    operator = OperatorStandIn(api, "alpha", hold_seconds=0.3 if policy == "Forbid" else 0)
    start = threading.Barrier(20)

    def trigger(_: int) -> httpx.Response:
        start.wait()
        return api.post("/jobs/alpha/trigger")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(trigger, range(20)))
    accepted = [a.json()["data"] for a in answers if a.status_code == 200]
    refused = [a.json() for a in answers if a.status_code == 409]
    assert len(accepted) + len(refused) == 20, [a.text for a in answers]
    if policy == "Allow":
        assert not refused
    assert all("Forbid" in r["message"] for r in refused)

    new = [a for a in accepted if not a["joined"]]
    written = tokens.settle(len(new))
    handled = operator.finish(written)
    answered = {a["run_id"] for a in accepted}
    assert answered == {manual_run_id(api.namespace, "alpha", t) for t in written}  # every run id will exist
    assert len(new) == len(written) == len({a["token"] for a in new})  # one new run per token written
    assert all(a["token"] in written for a in accepted if a["joined"])  # a joined run is a token's run
    # No token was overwritten before it was acknowledged: the operator saw every one of them.
    assert sorted(handled) == sorted(written)
    entries = api.history(action="trigger")
    assert len(entries) == 20
    assert sorted(e["details"]["run_id"] for e in entries if e["status"] == "success") == sorted(
        a["run_id"] for a in accepted)
