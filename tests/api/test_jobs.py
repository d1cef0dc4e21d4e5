"""Jobs: list and detail from the SyncJob cache, underscore aliases, metadata overrides, times in the job's zone,
and pause, resume and trigger as changes a user can see on the SyncJob in the cluster."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from kubernetes import client

from syncjob import mongo, names
from syncjob.runs import manual_job_name, manual_run_id
from tests.api.conftest import Api, acknowledge


def test_lists_jobs_with_the_seeds_fields_and_next_run_in_the_job_time_zone(api: Api) -> None:
    api.create_syncjob("tushare-quotes-sync", displayName="Tushare-实时行情同步", description="行情",
                       schedule="*/5 9-15 * * 1-5", timeZone="Asia/Shanghai", sources=["tushare", "akshare"])
    api.create_syncjob("ny-daily", schedule="0 18 * * *", timeZone="America/New_York", paused=True)
    r = api.get("/jobs")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and body["message"] == "获取到 2 个定时任务"
    assert dt.datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
    jobs = {j["id"]: j for j in body["data"]}
    quotes = jobs["tushare-quotes-sync"]
    assert quotes["name"] == "Tushare-实时行情同步" and quotes["namespace"] == api.namespace  # the page shows names
    assert jobs["ny-daily"]["name"] == "ny-daily"  # no display name, no source the page knows
    assert quotes["display_name"] == "Tushare-实时行情同步" and quotes["description"] == "行情"
    assert quotes["task"] == "quotes" and quotes["sources"] == ["tushare", "akshare"]
    assert quotes["trigger"] == "*/5 9-15 * * 1-5 (Asia/Shanghai)"
    assert quotes["paused"] is False and quotes["last_execution"] is None
    nxt = dt.datetime.fromisoformat(quotes["next_run_time"])
    assert nxt.utcoffset() == dt.timedelta(hours=8)
    assert nxt > dt.datetime.now(dt.UTC) and nxt.minute % 5 == 0 and 9 <= nxt.hour <= 15 and nxt.weekday() < 5
    assert jobs["ny-daily"]["paused"] is True and jobs["ny-daily"]["next_run_time"] is None


def test_underscore_id_names_the_same_job_and_detail_adds_spec_and_status(api: Api) -> None:
    api.create_syncjob("tushare-quotes-sync", tradingHoursOnly=True, options={"incremental": True})
    r = api.get("/jobs/tushare_quotes_sync")
    assert r.status_code == 200
    job = r.json()["data"]
    assert job["id"] == "tushare-quotes-sync"
    assert job["trading_hours_only"] is True and job["options"] == {"incremental": True}
    assert job["concurrency_policy"] == "Forbid" and job["status"]["generation"] == 1
    assert dt.datetime.fromisoformat(job["created_at"]).utcoffset() == dt.timedelta(hours=8)


def test_unknown_job_is_404_with_the_envelope(api: Api) -> None:
    for path in ("/jobs/no-such-job", "/jobs/no-such-job/history", "/jobs/no-such-job/executions",
                 "/jobs/no-such-job/execution-stats"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json()["success"] is False and r.json()["data"] is None and "no-such-job" in r.json()["message"]
    r = api.post("/jobs/no-such-job/pause")
    assert r.status_code == 404
    entry = api.history(action="pause")[0]
    assert entry["status"] == "failed" and entry["user"] == "adam" and "not found" in entry["error_message"]


def test_malformed_job_ids_are_422(api: Api) -> None:
    for bad in ("Upper", "a..b", "x" * 64, "-lead", "$where", "a%20b"):
        r = api.get(f"/jobs/{bad}")
        assert r.status_code == 422, bad
        assert r.json()["success"] is False


def test_metadata_override_wins_over_the_spec_and_can_be_removed(api: Api) -> None:
    api.create_syncjob("alpha", displayName="From spec", description="Spec text")
    r = api.put("/jobs/alpha/metadata", json={"display_name": "Override"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["display_name"] == "Override" and data["updated_by"] == "adam"
    doc = api.db[mongo.METADATA].find_one({"job_id": "alpha"})
    assert doc is not None and doc["display_name"] == "Override" and doc["updated_by"] == "adam"
    assert "description" not in doc  # left out: unchanged
    job = api.get("/jobs/alpha").json()["data"]
    assert job["display_name"] == "Override" and job["description"] == "Spec text"
    detail = api.get("/jobs/alpha").json()["data"]
    assert detail["spec_display_name"] == "From spec" and detail["metadata_updated_by"] == "adam"
    api.put("/jobs/alpha/metadata", json={"display_name": None})
    assert api.get("/jobs/alpha").json()["data"]["display_name"] == "From spec"
    assert [e["status"] for e in api.history(action="metadata")] == ["success", "success"]


def test_legacy_underscore_metadata_applies_to_the_syncjob(api: Api) -> None:
    api.db[mongo.METADATA].insert_one({"job_id": "tushare_quotes_sync", "display_name": "旧名称"})
    api.create_syncjob("tushare-quotes-sync")
    assert api.get("/jobs").json()["data"][0]["display_name"] == "旧名称"


def test_metadata_body_is_validated(api: Api) -> None:
    api.create_syncjob("alpha")
    assert api.put("/jobs/alpha/metadata", json={"display_name": "x" * 201}).status_code == 422
    assert api.put("/jobs/alpha/metadata", json={"display_name": {"$ne": 1}}).status_code == 422
    assert api.put("/jobs/alpha/metadata", json={"owner": "me"}).status_code == 422
    assert api.put("/jobs/alpha/metadata", content=b"not json",
                   headers={"Content-Type": "application/json"}).status_code == 422


def test_pause_and_resume_patch_spec_paused_with_the_api_field_manager(api: Api) -> None:
    api.create_syncjob("alpha")
    r = api.post("/jobs/alpha/pause")
    assert r.status_code == 200 and r.json()["data"]["paused"] is True
    obj = api.syncjob("alpha")
    assert obj["spec"]["paused"] is True
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert names.FIELD_MANAGER_API in managers
    listed = api.get("/jobs/alpha").json()["data"]
    assert listed["paused"] is True and listed["next_run_time"] is None  # this replica reads its own write
    assert api.post("/jobs/alpha/resume").json()["data"]["paused"] is False
    assert api.syncjob("alpha")["spec"]["paused"] is False
    entries = api.history(job_id="alpha")
    assert [(e["action"], e["status"], e["via"], e["target"]) for e in entries] == [
        ("pause", "success", "api", "alpha"), ("resume", "success", "api", "alpha")]


def test_trigger_sets_a_new_token_and_names_the_run(api: Api) -> None:
    api.create_syncjob("tushare-quotes-sync")
    r = api.post("/jobs/tushare_quotes_sync/trigger")
    assert r.status_code == 200
    data = r.json()["data"]
    token = data["token"]
    assert data["run_id"] == manual_run_id(api.namespace, "tushare-quotes-sync", token)
    assert data["run_id"].startswith(f"{api.namespace}.tushare-quotes-sync-m")
    assert data["force"] is False and data["joined"] is False
    assert data["job_created"] is False  # no operator runs in this test
    annotations = api.syncjob("tushare-quotes-sync")["metadata"]["annotations"]
    assert annotations[names.REQUESTED_AT] == token
    assert annotations[names.REQUESTED_BY] == "adam"
    assert names.FORCE_AT not in annotations
    acknowledge(api, "tushare-quotes-sync")  # the operator's part: the run was started
    forced = api.post("/jobs/tushare-quotes-sync/trigger", params={"force": "true"}).json()
    assert forced["data"]["token"] != token and forced["data"]["force"] is True
    assert "强制模式" in forced["message"]
    annotations = api.syncjob("tushare-quotes-sync")["metadata"]["annotations"]
    assert annotations[names.REQUESTED_AT] == annotations[names.FORCE_AT] == forced["data"]["token"]
    entries = api.history(action="trigger")
    assert [e["details"]["force"] for e in entries] == [False, True]
    assert entries[1]["details"]["run_id"] == forced["data"]["run_id"]


def test_trigger_reports_the_job_when_it_exists(make_api: Callable[..., Api]) -> None:
    """The operator is not running here: the test plays its part by creating the Job the token names."""
    api = make_api(trigger_wait_seconds=3)  # the most the settings allow
    api.create_syncjob("alpha")

    created = threading.Event()

    def operator_stand_in() -> None:
        def requested() -> bool:
            return names.REQUESTED_AT in (api.syncjob("alpha")["metadata"].get("annotations") or {})

        Api.wait_for(requested, "the trigger annotation")
        token = api.syncjob("alpha")["metadata"]["annotations"][names.REQUESTED_AT]
        client.BatchV1Api(api.k8s).create_namespaced_job(api.namespace, {
            "metadata": {"name": manual_job_name("alpha", token)},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "sync", "image": "sync:test"}]}}},
        })
        created.set()

    thread = threading.Thread(target=operator_stand_in)
    thread.start()
    r = api.post("/jobs/alpha/trigger")
    thread.join()
    assert created.is_set()
    assert r.json()["data"]["job_created"] is True


def test_changes_made_with_kubectl_reach_the_cache(api: Api) -> None:
    api.create_syncjob("alpha")
    custom = client.CustomObjectsApi(api.k8s)
    custom.patch_namespaced_custom_object(names.GROUP, names.VERSION, api.namespace, names.PLURAL, "alpha",
                                          {"spec": {"paused": True, "displayName": "Patched"}})
    Api.wait_for(lambda: api.get("/jobs/alpha").json()["data"]["display_name"] == "Patched", "the watch event")
    assert api.get("/jobs/alpha").json()["data"]["paused"] is True
    custom.delete_namespaced_custom_object(names.GROUP, names.VERSION, api.namespace, names.PLURAL, "alpha")
    Api.wait_for(lambda: api.get("/jobs/alpha").status_code == 404, "the deletion")
    assert api.get("/jobs").json()["data"] == []
