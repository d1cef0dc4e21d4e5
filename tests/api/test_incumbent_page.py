"""The incumbent's scheduler page (TradingAgents-CN's SchedulerManagement.vue over its scheduler.ts client), unchanged,
on our API: every field it reads, in the type and unit it reads it, from a running app serving the samples, our
records and the incumbent's own records (ObjectIds, naive UTC+8 times, seconds) side by side.

The page resolves a 2xx answer to the JSON body and rejects one whose envelope says `success: false`; it filters jobs
by data source by looking for `Tushare`, `AKShare` or `BaoStock` in `name`; renders `execution_time.toFixed(2)` + 秒
whenever the field is not undefined (so null throws in its detail dialog); renders `progress` whenever it is not
undefined; passes `_id` in the paths of cancel, mark-failed (reason 进程已手动终止) and delete.
"""

from __future__ import annotations

import datetime as dt
import math
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from syncjob import mongo
from testbed.cluster import LocalCluster
from tests.api.conftest import Api

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
SOURCES = ("Tushare", "AKShare", "BaoStock")
PAGE_STATUSES = {"running", "success", "failed", "missed"}  # the client's type; other words are shown raw
T0 = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)  # 09:30 in Shanghai
LEGACY_ID, LEGACY_RUNNING_ID = ObjectId(), ObjectId()


@pytest.fixture
def page(api: Api, cluster: LocalCluster) -> Api:
    cluster.kubectl("apply", "-k", str(SAMPLES), "-n", api.namespace)
    api.wait_for(lambda: len(api.get("/jobs").json().get("data") or []) == 16, "the samples to be served")
    api.renew_lease()
    job = "tushare-quotes-sync"
    api.add_execution(f"{job}-29400000", job, status="success", now=T0, execution_time=12.5, progress=100,
                      finished_at=T0 + dt.timedelta(seconds=12.5), updated_at=T0 + dt.timedelta(seconds=12.5),
                      return_value={"total": 5000, "updated": 4990, "errors": 10}, source_used="tushare")
    api.add_execution(f"{job}-29400005", job, status="failed", now=T0 + dt.timedelta(minutes=5), execution_time=3.0,
                      error_message="TushareUnavailable: token rejected", traceback="Traceback (most recent call)",
                      updated_at=T0 + dt.timedelta(minutes=5, seconds=3))
    api.add_execution(f"{job}-mrunning", job, status="running", now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30),
                      progress=40, progress_message="syncing", current_item="600000", processed_items=2000,
                      total_items=5000, updated_at=dt.datetime.now(dt.UTC))
    api.add_execution(f"{job}-29400010", job, status="missed", now=T0 + dt.timedelta(minutes=10), execution_time=0.0)
    # The incumbent's records: ObjectIds, its underscore job id, naive datetimes meaning UTC+8, seconds.
    api.db[mongo.EXECUTIONS].insert_many([
        {"_id": LEGACY_ID, "job_id": "tushare_quotes_sync", "job_name": "实时行情同步", "status": "success",
         "scheduled_time": dt.datetime(2026, 3, 1, 9, 30), "timestamp": dt.datetime(2026, 3, 1, 9, 30),
         "updated_at": dt.datetime(2026, 3, 1, 9, 31), "execution_time": 61.234, "is_manual": False,
         "progress": 100, "return_value": "{'total': 10, 'errors': []}"},
        {"_id": LEGACY_RUNNING_ID, "job_id": "tushare_quotes_sync", "job_name": "实时行情同步", "status": "running",
         "timestamp": dt.datetime(2026, 3, 1, 10, 0), "is_manual": True, "progress": 10},
    ])
    api.db[mongo.HISTORY].insert_one({"job_id": "tushare_quotes_sync", "action": "pause", "status": "success",
                                      "timestamp": dt.datetime(2026, 3, 1, 8, 0)})
    return api


def _ok(r: Any) -> Any:
    """What the page's request wrapper resolves to: a 2xx body with success true (anything else rejects)."""
    assert 200 <= r.status_code < 300, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


def _datetime(value: Any) -> dt.datetime:
    """A date-time the page formats: an ISO string with an offset (a JS Date parses it as one instant)."""
    assert isinstance(value, str), value
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed


def _seconds(value: Any) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value), value
    assert f"{value:.2f}"  # toFixed(2)


def test_job_list_and_detail_fields(page: Api) -> None:
    jobs = _ok(page.get("/jobs"))
    assert isinstance(jobs, list) and len(jobs) == 16
    for job in jobs:
        assert isinstance(job["id"], str) and job["id"].lower()
        assert isinstance(job["name"], str) and job["name"]
        assert job["next_run_time"] is None or _datetime(job["next_run_time"])
        assert isinstance(job["paused"], bool)
        assert isinstance(job["trigger"], str)
        for optional in ("display_name", "description"):
            assert job.get(optional) is None or isinstance(job[optional], str)
    # The data-source filter: a job is under the source its name contains; ours name their primary source.
    by_source = {s: sorted(j["id"] for j in jobs if s in j["name"]) for s in SOURCES}
    primary = {j["id"]: j["sources"][0] for j in jobs}
    for source in SOURCES:
        assert by_source[source], source
        assert {primary[i] for i in by_source[source]} >= {source.lower()}
    for job in jobs:
        spelled = {"tushare": "Tushare", "akshare": "AKShare", "baostock": "BaoStock"}[job["sources"][0]]
        assert spelled in job["name"], job
    assert sorted(j["name"] for j in jobs)  # localeCompare needs strings
    assert {j["id"]: j["name"] for j in jobs}["tushare-quotes-sync"] == "Tushare-实时行情同步"
    assert {j["id"]: j["name"] for j in jobs}["basics-sync-service"] == "股票基础信息同步（多数据源）（Tushare）"  # noqa: RUF001
    detail = _ok(page.get("/jobs/tushare-quotes-sync"))
    assert detail["id"] == "tushare-quotes-sync" and "Tushare" in detail["name"]
    for optional, kind in (("func", str), ("kwargs", dict), ("args", list), ("misfire_grace_time", int),
                           ("max_instances", int)):
        assert detail.get(optional) is None or isinstance(detail[optional], kind)
    assert (detail["kwargs"], detail["args"], detail["max_instances"]) == ({}, [], 1)
    assert _ok(page.get("/jobs/tushare-historical-sync"))["kwargs"] == {"incremental": True}
    assert _ok(page.get("/jobs/tushare_quotes_sync"))["id"] == "tushare-quotes-sync"  # the incumbent's id


def _check_execution(item: dict[str, Any]) -> None:
    assert isinstance(item["_id"], str) and urllib.parse.quote(item["_id"], safe="") == item["_id"]
    for name in ("job_id", "job_name", "status"):
        assert isinstance(item[name], str), (name, item)
    for name in ("scheduled_time", "timestamp", "updated_at"):
        if item.get(name):
            _datetime(item[name])
    if "execution_time" in item:  # the detail dialog renders it whenever it is there
        _seconds(item["execution_time"])
    if "progress" in item:
        _seconds(item["progress"])
    for name in ("progress_message", "current_item"):
        assert item.get(name) is None or isinstance(item[name], str)
    for name in ("processed_items", "total_items"):
        assert item.get(name) is None or isinstance(item[name], int)
    for name in ("is_manual", "cancel_requested"):
        assert item.get(name) is None or isinstance(item[name], bool)
    for name in ("error_message", "traceback", "return_value"):
        assert item.get(name) is None or isinstance(item[name], str), (name, item)
    if item["status"] == "running":
        assert item.get("updated_at") or item.get("timestamp")  # its running time is shown from these


def test_execution_lists_ours_and_the_incumbents_side_by_side(page: Api) -> None:
    for path in ("/executions", "/jobs/tushare-quotes-sync/executions"):
        data = _ok(page.get(path, params={"limit": 200}))
        assert isinstance(data["items"], list) and isinstance(data["total"], int) and data["total"] == 6, path
        for item in data["items"]:
            _check_execution(item)
        by_id = {i["_id"]: i for i in data["items"]}
        ours = by_id[page.run_id("tushare-quotes-sync-29400000")]
        assert ours["execution_time"] == 12.5 and ours["status"] in PAGE_STATUSES
        assert ours["timestamp"] == "2026-03-02T09:30:00+08:00"
        assert ours["return_value"] == '{"errors": 10, "total": 5000, "updated": 4990}'
        assert ours["result"] == {"total": 5000, "updated": 4990, "errors": 10}
        running = by_id[page.run_id("tushare-quotes-sync-mrunning")]
        assert 25 <= running["execution_time"] < 600  # elapsed seconds so far, never null
        assert (running["progress"], running["processed_items"], running["total_items"]) == (40, 2000, 5000)
        failed = by_id[page.run_id("tushare-quotes-sync-29400005")]
        assert failed["error_message"].startswith("TushareUnavailable") and failed["traceback"]
        legacy = by_id[str(LEGACY_ID)]
        # 09:30 naive, meaning UTC+8: the same instant as "2026-03-01T09:30:00+08:00", whatever the rendering.
        assert _datetime(legacy["timestamp"]) == dt.datetime(2026, 3, 1, 1, 30, tzinfo=dt.UTC)
        assert legacy["timestamp"] == "2026-03-01T09:30:00+08:00"
        assert _datetime(legacy["scheduled_time"]) == dt.datetime(2026, 3, 1, 1, 30, tzinfo=dt.UTC)
        assert legacy["execution_time"] == 61.234  # seconds already
        assert legacy["return_value"] == "{'total': 10, 'errors': []}"
        legacy_running = by_id[str(LEGACY_RUNNING_ID)]
        started = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
        elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
        assert abs(legacy_running["execution_time"] - elapsed) < 120
    # A record with nothing to say about its duration or progress leaves the field out (null would be rendered).
    page.add_execution("tushare-quotes-sync-bare", "tushare-quotes-sync", status="cancelled")
    text = page.get("/executions", params={"limit": 200}).text
    assert '"execution_time":null' not in text.replace(" ", "") and '"progress":null' not in text.replace(" ", "")


def test_row_actions_succeed_where_the_page_offers_them(page: Api) -> None:
    reason = "进程已手动终止"
    page.add_execution("tushare-quotes-sync-mcancel", "tushare-quotes-sync", status="running")
    for run in (page.run_id("tushare-quotes-sync-mcancel"), str(LEGACY_RUNNING_ID)):
        _ok(page.post(f"/executions/{run}/cancel"))
    for run in (page.run_id("tushare-quotes-sync-mrunning"), str(LEGACY_RUNNING_ID)):
        data = _ok(page.post(f"/executions/{run}/mark-failed", params={"reason": reason}))
        assert data["status"] == "failed"
    records = page.db[mongo.EXECUTIONS]
    marked = records.find_one({"_id": page.run_id("tushare-quotes-sync-mrunning")})
    assert marked is not None and (marked["status"], marked["reason"], marked["error_message"]) == (
        "failed", "MarkedFailed", reason)
    assert records.find_one({"_id": LEGACY_RUNNING_ID})["status"] == "failed"  # type: ignore[index]
    for run in (page.run_id("tushare-quotes-sync-29400005"), str(LEGACY_ID)):
        _ok(page.delete(f"/executions/{run}"))
    assert records.count_documents({"_id": {"$in": [page.run_id("tushare-quotes-sync-29400005"), LEGACY_ID]}}) == 0


def test_stats_health_history_and_execution_stats(page: Api) -> None:
    stats = _ok(page.get("/stats"))
    for name in ("total_jobs", "running_jobs", "paused_jobs", "scheduler_state"):
        assert isinstance(stats[name], int) and not isinstance(stats[name], bool)
    assert stats["total_jobs"] == 16 and isinstance(stats["scheduler_running"], bool) and stats["scheduler_running"]
    health = _ok(page.get("/health"))
    assert isinstance(health["status"], str) and isinstance(health["running"], bool)
    assert isinstance(health["state"], int) and _datetime(health["timestamp"])
    page.post("/jobs/tushare-quotes-sync/pause")
    for path in ("/history", "/jobs/tushare-quotes-sync/history"):
        entries = _ok(page.get(path))["history"]
        assert len(entries) == 2
        for entry in entries:
            for name in ("job_id", "action", "status"):
                assert isinstance(entry[name], str)
            _datetime(entry["timestamp"])
            assert entry.get("error_message") is None or isinstance(entry["error_message"], str)
        legacy = next(e for e in entries if e["job_id"] == "tushare_quotes_sync")
        assert _datetime(legacy["timestamp"]) == dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)  # 08:00 UTC+8
    es = _ok(page.get("/jobs/tushare-quotes-sync/execution-stats"))
    for name in ("total", "success", "failed", "missed"):
        assert isinstance(es[name], int)
    assert (es["total"], es["success"], es["failed"], es["missed"]) == (6, 2, 1, 1)
    assert es["avg_execution_time"] == round((12.5 + 61.234) / 2, 2)  # seconds, 2 places, ours and the incumbent's
    last = es["last_execution"]
    assert last is None or (isinstance(last["status"], str) and _datetime(last["timestamp"]))


def test_the_incumbents_records_belong_to_the_watched_namespace(kube_api: Api) -> None:
    """Kubernetes mode, WATCH_NAMESPACE set: the incumbent's records (no namespace) are that namespace's, read by
    its viewers and changed by its admins."""
    legacy = ObjectId()
    kube_api.db[mongo.EXECUTIONS].insert_one({"_id": legacy, "job_id": "tushare_quotes_sync", "status": "running",
                                              "timestamp": dt.datetime(2026, 3, 1, 10, 0)})
    items = _ok(kube_api.get("/executions", who="viewer"))["items"]
    assert [i["_id"] for i in items] == [str(legacy)]
    assert kube_api.get("/executions", who="nobody").status_code == 403
    assert kube_api.post(f"/executions/{legacy}/mark-failed", who="viewer").status_code == 403
    _ok(kube_api.post(f"/executions/{legacy}/mark-failed", who="admin", params={"reason": "进程已手动终止"}))
    assert kube_api.db[mongo.EXECUTIONS].find_one({"_id": legacy})["status"] == "failed"  # type: ignore[index]
