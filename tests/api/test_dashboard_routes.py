"""The dashboard's API side: the page and its reads, the stream ticket, and the SSE run feed's auth and events."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from syncjob_api.api.routes import stream

from syncjob import mongo
from tests.api.conftest import Api


def test_the_stream_is_documented_in_openapi_as_an_event_stream_behind_bearer_auth(api: Api) -> None:
    spec = api.http.get("/openapi.json").json()
    op = spec["paths"]["/api/scheduler/stream/runs"]["get"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert {"BearerToken": []} in op["security"]
    assert "/api/scheduler/stream/ticket" in spec["paths"]
    assert "/api/scheduler/dashboard/jobs" in spec["paths"]


def test_a_stream_needs_a_valid_ticket_or_token(api: Api) -> None:
    assert api.get("/stream/runs", who=None).status_code == 401
    assert api.get("/stream/runs", who="bad").status_code == 401
    assert api.get("/stream/runs?ticket=forged.ticket", who=None).status_code == 401
    expired, _ = stream.issue_ticket("vera", now=time.time() - 60)
    answer = api.get(f"/stream/runs?ticket={expired}", who=None)
    assert answer.status_code == 401 and "expired" in answer.json()["message"]
    assert api.post("/stream/ticket", who=None).status_code == 401
    body, _, sig = stream.issue_ticket("vera")[0].partition(".")
    assert stream.check_ticket(f"{body}.{sig[:-2]}xx") is None  # a changed signature
    assert stream.check_ticket(f"{body}.{sig}") == "vera"


def _events(api: Api, ticket: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    monkeypatch.setattr(stream, "STREAM_MAX_SECONDS", 1.5)
    events: list[tuple[str, Any]] = []
    with api.http.stream("GET", f"/api/scheduler/stream/runs?ticket={ticket}") as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in res.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
    return events


def test_the_stream_sends_the_running_runs_with_a_ticket(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api.create_syncjob("streamed")
    api.add_execution("streamed-m1", "streamed", processed_items=2, total_items=5, current_item="600000.SH")
    api.db[mongo.EXECUTIONS].update_one({"_id": api.run_id("streamed-m1")}, {"$set": {"progress": 40}})
    api.add_execution("streamed-m0", "streamed", status="success")
    ticket = api.post("/stream/ticket", who="viewer").json()["data"]["ticket"]
    events = _events(api, ticket, monkeypatch)
    name, first = events[0]
    assert name == "snapshot"
    assert [r["id"] for r in first["runs"]] == [api.run_id("streamed-m1")]
    run = first["runs"][0]
    assert (run["progress"], run["processed_items"], run["total_items"], run["current_item"]) == \
        (40, 2, 5, "600000.SH")
    assert events[-1][0] == "expired"
    finished = api.get("/dashboard/runs").json()["data"]
    assert [(r["id"], r["status"]) for r in finished] == [(api.run_id("streamed-m0"), "success")]


def test_the_job_table_filters_and_pages_on_the_server(api: Api) -> None:
    for i in range(5):
        api.create_syncjob(f"tbl-{i}", task="daily" if i % 2 else "quotes",
                           sources=["tushare", "file"] if i == 4 else ["file"])
    now = dt.datetime.now(dt.UTC)
    for i, (rid, status, took) in enumerate([("a", "success", 10.0), ("b", "success", 30.0), ("c", "failed", 1.0)]):
        api.add_execution(f"tbl-1-{rid}", "tbl-1", status=status, execution_time=took,
                          now=now - dt.timedelta(minutes=10 - i))
    page = api.get("/dashboard/jobs?limit=2").json()["data"]
    assert (page["total"], page["all"], len(page["items"])) == (5, 5, 2)
    assert page["facets"]["tasks"] == ["daily", "quotes"]
    daily = api.get("/dashboard/jobs?task=daily").json()["data"]["items"]
    assert [j["name"] for j in daily] == ["tbl-1", "tbl-3"]
    one = daily[0]
    assert one["success_rate_7d"] == round(2 / 3, 4) and one["median_duration_7d"] == 20.0
    assert [r["status"] for r in one["runs"]] == ["failed", "success", "success"]  # newest first
    assert [j["id"] for j in api.get("/dashboard/jobs?source=tushare").json()["data"]["items"]] == ["tbl-4"]
    assert [j["name"] for j in api.get("/dashboard/jobs?q=L-2").json()["data"]["items"]] == ["tbl-2"]
    assert api.get("/dashboard/jobs?status=bogus").status_code == 422
    assert api.get("/dashboard/jobs", who=None).status_code == 401


def test_me_names_the_role_and_the_page_is_served(api: Api) -> None:
    assert api.get("/dashboard/me", who="viewer").json()["data"]["role"] == "viewer"
    assert api.get("/dashboard/me", who="admin").json()["data"]["role"] == "admin"
    assert api.get("/dashboard/me", who="bad").status_code == 401
    page = api.http.get("/dashboard/")
    assert page.status_code in (200, 503)  # 503 names `make web` when the assets are not built
    if page.status_code == 200:
        assert '<div id="app">' in page.text
    assert api.http.get("/", follow_redirects=False).headers["location"] == "/dashboard/"


def test_a_run_detail_has_the_whole_record(api: Api) -> None:
    api.create_syncjob("detailed")
    api.add_execution("detailed-m1", "detailed", status="failed", error_message="all sources failed",
                      traceback="Traceback ...", attempts=[{"pod": "p-1", "outcome": "failed"}],
                      return_value={"inserted": 3, "updated": 1, "unchanged": 0})
    data = api.get(f"/dashboard/runs/{api.run_id('detailed-m1')}").json()["data"]
    assert data["id"] == api.run_id("detailed-m1")
    assert data["attempts"][0]["pod"] == "p-1" and data["return_value"]["inserted"] == 3
    assert data["started_at"].endswith("+08:00")
    assert api.get("/dashboard/runs/missing.run").status_code == 404
    sched = api.get("/dashboard/jobs/detailed/schedule").json()["data"]
    assert len(sched["next_runs"]) == 10 and sched["durations"][0]["status"] == "failed"


def test_in_kubernetes_mode_the_role_comes_from_rbac_and_the_ticket_from_the_token(kube_api: Api) -> None:
    assert kube_api.get("/dashboard/me", who="viewer").json()["data"]["role"] == "viewer"  # alice: get
    assert kube_api.get("/dashboard/me", who="admin").json()["data"]["role"] == "admin"  # bob: patch
    assert kube_api.get("/dashboard/me", who="nobody").status_code == 403
    assert kube_api.post("/stream/ticket", who="nobody").status_code == 403
    ticket = kube_api.post("/stream/ticket", who="viewer").json()["data"]
    assert ticket["user"] == "alice" and stream.check_ticket(ticket["ticket"]) == "alice"
