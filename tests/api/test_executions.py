"""Executions: pages and filters, per-job stats, and cancel, mark-failed and delete with their state checks, as a
user sees them in the answers, in the records and on the SyncJob."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId
from kubernetes import client

from syncjob import executions, mongo, names
from syncjob.executions import Writer
from tests.api.conftest import Api

T0 = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)


def _seed(api: Api) -> None:
    api.create_syncjob("alpha", timeZone="Asia/Shanghai")
    for i in range(30):
        status = "success" if i % 3 else "failed"
        api.add_execution(f"alpha-{i:03d}", "alpha", status=status, now=T0 + dt.timedelta(minutes=i),
                          execution_time=1.5 * (i + 1), is_manual=i % 5 == 0, trigger="manual" if i % 5 == 0
                          else "schedule")
    api.add_execution("beta-000", "beta", status="missed", now=T0)


def test_lists_executions_newest_first_with_paging_and_times_in_the_job_zone(api: Api) -> None:
    _seed(api)
    r = api.get("/executions", params={"limit": 10, "offset": 5})
    page = r.json()["data"]
    assert page["total"] == 31 and page["limit"] == 10 and page["offset"] == 5
    ids = [i["id"] for i in page["items"]]
    assert ids == [f"{api.namespace}.alpha-{i:03d}" for i in range(24, 14, -1)]
    first = page["items"][0]
    assert first["_id"] == first["id"] and first["status"] == "failed" and first["execution_time"] == 37.5
    assert first["timestamp"] == "2026-03-02T09:54:00+08:00"


def test_filters_by_job_status_and_manual(api: Api) -> None:
    _seed(api)
    assert api.get("/executions", params={"job_id": "beta"}).json()["data"]["total"] == 1
    assert api.get("/executions", params={"status": "failed"}).json()["data"]["total"] == 10
    manual = api.get("/executions", params={"is_manual": "true"}).json()["data"]
    assert manual["total"] == 7 and all(i["is_manual"] for i in manual["items"])
    assert api.get("/executions", params={"is_manual": "false"}).json()["data"]["total"] == 24
    per_job = api.get("/jobs/alpha/executions", params={"status": "success", "limit": 200}).json()["data"]
    assert per_job["total"] == 20 and {i["job_id"] for i in per_job["items"]} == {"alpha"}


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 201}, {"offset": -1}, {"status": "exploded"}, {"status": '{"$ne": null}'},
    {"job_id": '{"$gt": ""}'}, {"job_id": "a b"}, {"is_manual": "maybe"}, {"limit": "ten"},
])
def test_bad_execution_parameters_are_422(api: Api, params: dict[str, object]) -> None:
    r = api.get("/executions", params=params)
    assert r.status_code == 422
    assert r.json()["success"] is False and r.json()["message"].startswith("Invalid request")


def test_history_limits_follow_the_seed(api: Api) -> None:
    api.create_syncjob("alpha")
    assert api.get("/jobs/alpha/history", params={"limit": 101}).status_code == 422
    assert api.get("/jobs/alpha/history", params={"limit": 100}).status_code == 200
    assert api.get("/history", params={"limit": 201}).status_code == 422
    assert api.get("/history", params={"limit": 200}).status_code == 200
    assert api.get("/history", params={"status": "weird"}).status_code == 422


def test_execution_stats_count_every_status_with_percentiles(api: Api) -> None:
    api.create_syncjob("alpha")
    for i in range(1, 21):
        api.add_execution(f"alpha-s{i}", "alpha", status="success", execution_time=i * 0.5,
                          now=T0 + dt.timedelta(minutes=i))
    for status in ("failed", "failed", "missed", "skipped", "cancelled", "running"):
        api.add_execution(f"alpha-{status}-{api.db[mongo.EXECUTIONS].count_documents({})}", "alpha", status=status,
                          now=T0)
    api.add_execution("alpha-legacy", "alpha_legacy_other", status="success")  # another job: not counted
    stats = api.get("/jobs/alpha/execution-stats").json()["data"]
    assert stats["total"] == 26 and stats["success"] == 20 and stats["failed"] == 2 and stats["missed"] == 1
    assert stats["skipped"] == 1 and stats["cancelled"] == 1 and stats["running"] == 1
    assert stats["avg_execution_time"] == 5.25  # seconds, as the incumbent's page reads them
    assert stats["p50_execution_time"] == 5.0 and stats["p95_execution_time"] == 9.5
    assert stats["success_rate"] == round(20 / 23, 4)
    assert stats["last_execution"]["run_id"] == api.run_id("alpha-s20")
    assert stats["last_execution"]["execution_time"] == 10.0


def test_a_runs_gap_report_is_shown_and_runs_with_gaps_are_counted(api: Api) -> None:
    api.create_syncjob("alpha")
    gaps = {"kind": "daily", "symbols_checked": 2, "symbols_with_gaps": 1, "missing_sessions": 3,
            "by_symbol": {"000001.SZ": {"missing": 3, "sessions": ["2026-11-10..2026-11-11", "2026-11-19"]}}}
    api.add_execution("alpha-1", "alpha", status="success", gaps=gaps, now=T0)
    api.add_execution("alpha-2", "alpha", status="success", gaps={**gaps, "symbols_with_gaps": 0, "by_symbol": {}},
                      now=T0 + dt.timedelta(minutes=1))
    api.add_execution("alpha-3", "alpha", status="success", now=T0 + dt.timedelta(minutes=2))
    items = {i["id"]: i for i in api.get("/jobs/alpha/executions").json()["data"]["items"]}
    assert items[api.run_id("alpha-1")]["gaps"] == gaps and items[api.run_id("alpha-3")]["gaps"] is None
    assert api.get("/jobs/alpha/execution-stats").json()["data"]["with_gaps"] == 1


def test_execution_stats_of_a_job_without_runs(api: Api) -> None:
    api.create_syncjob("alpha")
    stats = api.get("/jobs/alpha/execution-stats").json()["data"]
    assert stats["total"] == 0 and stats["success_rate"] is None and stats["p50_execution_time"] is None
    assert stats["with_gaps"] == 0
    assert stats["last_execution"] is None


def test_incumbent_records_with_underscore_ids_belong_to_the_job(api: Api) -> None:
    api.create_syncjob("tushare-quotes-sync")
    legacy_id = ObjectId()
    api.db[mongo.EXECUTIONS].insert_one({"_id": legacy_id, "job_id": "tushare_quotes_sync", "status": "success",
                                          "execution_time": 12.5, "timestamp": T0})
    page = api.get("/jobs/tushare_quotes_sync/executions").json()["data"]
    assert [i["id"] for i in page["items"]] == [str(legacy_id)]
    assert page["items"][0]["is_manual"] is None
    assert api.delete(f"/executions/{legacy_id}").status_code == 200
    assert api.db[mongo.EXECUTIONS].count_documents({}) == 0


def test_cancel_flags_the_record_and_scopes_a_cancel_token_to_the_run(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-run1", "alpha", status="running")
    run_id = api.run_id("alpha-run1")
    r = api.post(f"/executions/{run_id}/cancel")
    assert r.status_code == 200
    assert r.json()["data"]["execution_id"] == run_id
    token = r.json()["data"]["token"]
    record = api.execution("alpha-run1")
    assert record is not None and record["cancel_requested"] is True and record["cancel_requested_by"] == "adam"
    assert record["status"] == "running"  # the pod or the operator closes it, not the API
    annotations = api.syncjob("alpha")["metadata"]["annotations"]
    assert annotations[names.CANCEL_AT] == token
    assert annotations[names.CANCEL_RUNS] == f"{token}={run_id}"
    assert annotations[names.CANCEL_REQUESTED_BY] == "adam"
    assert names.REQUESTED_BY not in annotations  # a cancel does not rename who asked for a pending run
    entry = api.history(action="cancel")[0]
    assert entry["status"] == "success" and entry["target"] == run_id and entry["job_id"] == "alpha"


def test_cancel_of_a_finished_run_says_it_had_already_finished_and_how(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-done", "alpha", status="success")
    api.add_execution("alpha-gone", "alpha", status="cancelled", cancel_requested=True, cancel_requested_by="eve")
    r = api.post(f"/executions/{api.run_id('alpha-done')}/cancel")
    assert r.status_code == 409
    assert "had already finished, with status success" in r.json()["message"]
    r = api.post(f"/executions/{api.run_id('alpha-gone')}/cancel")
    assert r.status_code == 409 and "with status cancelled" in r.json()["message"]
    gone = api.execution("alpha-gone")
    assert gone is not None and gone["cancel_requested"] is True and gone["cancel_requested_by"] == "eve"
    assert names.CANCEL_AT not in (api.syncjob("alpha")["metadata"].get("annotations") or {})
    assert api.execution("alpha-done").get("cancel_requested") is None  # type: ignore[union-attr]
    assert api.post(f"/executions/{api.run_id('alpha-nothing')}/cancel").status_code == 404
    assert [e["status"] for e in api.history(action="cancel")] == ["failed", "failed", "failed"]


def test_mark_failed_closes_a_running_record_whose_pod_is_gone(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-stuck", "alpha", status="running", now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90))
    r = api.post(f"/executions/{api.run_id('alpha-stuck')}/mark-failed", params={"reason": "node lost"})
    assert r.status_code == 200
    record = api.execution("alpha-stuck")
    assert record is not None and record["status"] == "failed" and record["error_message"] == "node lost"
    assert (record["reason"], record["closed_by"], record["marked_failed_by"]) == ("MarkedFailed", "api", "adam")
    assert record["finished_at"] is not None and 90 <= record["execution_time"] < 200  # seconds
    entry = api.history(action="mark-failed")[0]
    assert entry["status"] == "success" and entry["details"]["reason"] == "node lost"
    assert entry["details"]["deleted_job"] == "alpha-stuck"  # no retry of its Job may start after the verdict


def test_mark_failed_refuses_a_finished_record(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-ok", "alpha", status="success")
    r = api.post(f"/executions/{api.run_id('alpha-ok')}/mark-failed")
    assert r.status_code == 409 and "with status success" in r.json()["message"]
    assert api.execution("alpha-ok")["status"] == "success"  # type: ignore[index]


def test_mark_failed_on_a_live_run_records_failed_and_stops_its_pod(api: Api) -> None:
    """The incumbent's page offers 标记失败 on running rows and expects the run to end failed: the record is closed
    failed first (no other writer's verdict can replace it), then the Job is deleted so its pod stops."""
    api.create_syncjob("alpha")
    api.add_execution("alpha-live", "alpha", status="running")
    batch, core = client.BatchV1Api(api.k8s), client.CoreV1Api(api.k8s)
    job = batch.create_namespaced_job(api.namespace, {
        "metadata": {"name": "alpha-live"},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "sync", "image": "sync:test"}]}}},
    })
    core.create_namespaced_pod(api.namespace, {
        "metadata": {"name": "alpha-live-abcde", "labels": {"job-name": "alpha-live"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "alpha-live",
                                          "uid": job.metadata.uid}]},
        "spec": {"nodeSelector": {"testbed.syncjob.io/none": "true"},  # never scheduled: stays Pending
                 "containers": [{"name": "sync", "image": "sync:test"}]},
    })
    r = api.post(f"/executions/{api.run_id('alpha-live')}/mark-failed", params={"reason": "进程已手动终止"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stopped_pods"] == ["alpha-live-abcde (Pending)"]
    assert "deleted Job alpha-live" in r.json()["message"]
    record = api.execution("alpha-live")
    assert record is not None
    assert (record["status"], record["reason"], record["error_message"], record["closed_by"]) == (
        "failed", "MarkedFailed", "进程已手动终止", "api")
    assert record["stopped_pods"] == ["alpha-live-abcde (Pending)"]

    def gone() -> bool:
        try:
            core.read_namespaced_pod("alpha-live-abcde", api.namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    api.wait_for(gone, "the pod to be deleted with its Job", timeout=60)
    entry = api.history(action="mark-failed")[0]
    assert entry["status"] == "success" and entry["details"]["deleted_job"] == "alpha-live"


def test_delete_removes_a_finished_record_only(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-done", "alpha", status="failed")
    api.add_execution("alpha-run", "alpha", status="running")
    assert api.delete(f"/executions/{api.run_id('alpha-run')}").status_code == 409
    assert api.execution("alpha-run") is not None
    r = api.delete(f"/executions/{api.run_id('alpha-done')}")
    assert r.status_code == 200 and r.json()["data"] == {"execution_id": api.run_id("alpha-done"), "deleted": True}
    assert api.execution("alpha-done") is None
    assert api.delete(f"/executions/{api.run_id('alpha-done')}").status_code == 404
    assert [e["status"] for e in api.history(action="delete")] == ["failed", "success", "failed"]


def test_a_deleted_record_whose_job_still_exists_is_not_recreated_by_the_operator(api: Api) -> None:
    api.create_syncjob("alpha")
    doc = api.add_execution("alpha-m0123456789", "alpha", status="failed")
    run_id = api.run_id("alpha-m0123456789")
    assert api.delete(f"/executions/{run_id}").status_code == 200
    # The operator sees the run's Job again (a resync, a restart) and opens its record, as it does for every Job.
    ident = executions.identity(run_id=run_id, job_id="alpha", namespace=api.namespace, job="alpha-m0123456789",
                                trigger="manual", force=False, scheduled_time=None, created=doc["timestamp"])
    assert executions.open_run(api.db, ident, Writer.OPERATOR) is None
    assert api.execution("alpha-m0123456789") is None
    assert api.delete(f"/executions/{run_id}").status_code == 404
    assert api.post(f"/executions/{run_id}/cancel").status_code == 404
    assert api.get("/jobs/alpha/executions").json()["data"]["total"] == 0
    tombstone = api.db[mongo.EXECUTION_TOMBSTONES].find_one({"_id": run_id})
    assert tombstone is not None and tombstone["deleted_by"] == "adam"


def test_run_ids_carry_the_namespace_and_incumbent_object_ids_still_work(api: Api) -> None:
    api.create_syncjob("alpha")
    api.add_execution("alpha-29400000", "alpha", status="running")
    run_id = f"{api.namespace}.alpha-29400000"
    assert api.get("/executions").json()["data"]["items"][0]["id"] == run_id
    assert api.post(f"/executions/{run_id}/cancel").status_code == 200
    legacy = ObjectId()
    api.db[mongo.EXECUTIONS].insert_one({"_id": legacy, "job_id": "alpha", "status": "running", "timestamp": T0})
    r = api.post(f"/executions/{legacy}/mark-failed", params={"reason": "left running by the old scheduler"})
    assert r.status_code == 200 and r.json()["data"]["execution_id"] == str(legacy)
    assert api.db[mongo.EXECUTIONS].find_one({"_id": legacy})["status"] == "failed"  # type: ignore[index]


@pytest.mark.parametrize("bad", ["UPPER", "a$b", "x" * 128, "-x", "a..b", "ns.job.x", ".job", "ns."])
def test_malformed_execution_ids_are_422(api: Api, bad: str) -> None:
    assert api.post(f"/executions/{bad}/cancel").status_code == 422
