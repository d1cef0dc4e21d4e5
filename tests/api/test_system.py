"""Stats, health, metrics, OpenAPI, and what users see when MongoDB or the Kubernetes API is down."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from pymongo.database import Database
from syncjob_api.core.config import Settings
from syncjob_api.main import create_app

from syncjob import mongo
from testbed.mongo import MongoServer
from testbed.procs import free_port
from tests.api.conftest import Api


def test_stats_keep_the_seed_fields_with_honest_meanings(api: Api) -> None:
    api.create_syncjob("alpha")
    api.create_syncjob("beta")
    api.create_syncjob("gamma", paused=True)
    api.add_execution("alpha-1", "alpha", status="running")
    api.add_execution("beta-1", "beta", status="running")
    api.add_execution("beta-0", "beta", status="success")
    api.renew_lease()
    data = api.get("/stats").json()["data"]
    assert data == {"total_jobs": 3, "running_jobs": 2, "paused_jobs": 1, "executions_running": 2,
                    "scheduler_running": True, "scheduler_state": 1}


def test_health_says_the_operator_is_down_when_its_lease_is_missing_or_old(api: Api) -> None:
    health = api.get("/health").json()
    assert health["data"]["status"] == "unhealthy" and health["data"]["down"] == ["operator"]
    assert "not found" in health["data"]["components"]["operator"]["message"]
    api.renew_lease(age_seconds=60)
    operator = api.get("/health").json()["data"]["components"]["operator"]
    assert operator["ok"] is False and "60s ago" in operator["message"] and operator["age_seconds"] >= 60
    api.renew_lease()
    health = api.get("/health").json()
    assert health["data"]["status"] == "healthy" and health["data"]["running"] is True
    assert health["data"]["state"] == 1 and health["data"]["down"] == []
    components = health["data"]["components"]
    assert components["kubernetes"]["ok"] and components["mongodb"]["ok"] and components["cache"]["synced"]


def test_indexes_with_ttl_are_created_at_start(api: Api) -> None:
    indexes = api.db[mongo.EXECUTIONS].index_information()
    ttl = [i for i in indexes.values() if "expireAfterSeconds" in i]
    assert ttl and ttl[0]["expireAfterSeconds"] == 180 * 86400
    keys = {tuple(i["key"]) for i in indexes.values()}
    assert (("job_id", 1), ("timestamp", -1)) in keys
    assert any("expireAfterSeconds" in i for i in api.db[mongo.HISTORY].index_information().values())


def test_mongodb_down_answers_503_and_health_says_why(make_api: Callable[..., Api], mongo_db: Database) -> None:
    server = MongoServer().start()
    try:
        api = make_api(mongo_uri=f"mongodb://127.0.0.1:{server.port}/outage?directConnection=true",
                       mongo_timeout_ms=400)
        api.create_syncjob("alpha")
        assert api.get("/executions").status_code == 200
        server.stop()
        for method, path in (("GET", "/executions"), ("GET", "/jobs/alpha/execution-stats"), ("GET", "/history"),
                             ("POST", "/jobs/alpha/pause"), ("DELETE", f"/executions/{api.run_id('alpha-1')}")):
            r = api.request(method, path, "admin")
            assert r.status_code == 503, (method, path, r.text)
            assert r.json() == {"success": False, "data": None, "message": "MongoDB is unreachable; try again later",
                                "timestamp": r.json()["timestamp"]}
        assert api.syncjob("alpha")["spec"].get("paused") is False  # a mutation that cannot be audited is not made
        health = api.get("/health").json()["data"]
        assert "mongodb" in health["down"] and health["status"] == "unhealthy"
        assert health["components"]["mongodb"]["message"].startswith("MongoDB unreachable")
        assert health["components"]["kubernetes"]["ok"] is True
    finally:
        server.cleanup()


def test_kubernetes_unreachable_answers_503_and_health_says_why(make_api: Callable[..., Api],
                                                                 tmp_path: Path) -> None:
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
    }))
    api = make_api(kubeconfig=str(dead), cache_sync_timeout_seconds=0.3)
    for method, path in (("GET", "/jobs"), ("GET", "/jobs/alpha"), ("GET", "/stats"), ("POST", "/jobs/alpha/pause")):
        r = api.request(method, path, "admin")
        assert r.status_code == 503, (method, path, r.text)
        assert "Kubernetes API cannot be reached" in r.json()["message"]
    health = api.get("/health").json()["data"]
    assert {"kubernetes", "operator", "cache"} <= set(health["down"]) and "mongodb" not in health["down"]
    assert health["components"]["cache"]["synced"] is False
    assert api.http.get("/readyz").status_code == 503


def _not_found_count(text: str) -> float:
    """syncjob_api_requests_total for GET /api/scheduler/jobs/{job_id} answered 404."""
    wanted = {"method": "GET", "route": "/api/scheduler/jobs/{job_id}", "status": "404"}
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "syncjob_api_requests_total" and s.labels == wanted)


def test_metrics_count_requests_by_route_and_report_jobs_and_executions(api: Api) -> None:
    before = _not_found_count(api.http.get("/metrics").text)  # the counters are per process, not per app
    api.create_syncjob("alpha")
    api.create_syncjob("beta", paused=True)
    api.add_execution("alpha-1", "alpha", status="failed")
    api.get("/jobs/alpha")
    api.get("/jobs/nope")
    text = api.http.get("/metrics").text
    assert _not_found_count(text) - before == 1
    assert 'syncjob_api_request_duration_seconds_count{method="GET",route="/api/scheduler/jobs/{job_id}"}' in text
    assert 'syncjob_api_jobs{state="paused"} 1.0' in text and 'syncjob_api_jobs{state="active"} 1.0' in text
    assert 'syncjob_api_executions{status="failed"} 1.0' in text
    assert "syncjob_api_mongodb_up 1.0" in text


def test_openapi_documents_every_endpoint_with_models_and_error_envelopes(api: Api) -> None:
    assert api.http.get("/docs").status_code == 200
    spec = api.http.get("/openapi.json").json()
    operations = [(m, p) for p, item in spec["paths"].items() for m in item]
    assert len(operations) == 24 and all(p.startswith("/api/scheduler/") for _, p in operations)
    for method, path in operations:
        op = spec["paths"][path][method]
        if path == "/api/scheduler/stream/runs":  # Server-Sent Events (tests/api/test_dashboard_routes.py)
            assert "text/event-stream" in op["responses"]["200"]["content"]
        else:
            assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"], (method, path)
        for code in ("401", "403", "422", "503"):
            assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorEnvelope")
        assert op["security"] == [{"BearerToken": []}]
    stats = spec["components"]["schemas"]["SchedulerStats"]["properties"]
    assert "not paused" in stats["running_jobs"]["description"]


def test_history_endpoint_filters_by_job_status_and_action(api: Api) -> None:
    api.create_syncjob("alpha")
    api.create_syncjob("beta")
    api.post("/jobs/alpha/pause")
    api.post("/jobs/beta/pause", who="viewer")
    api.post("/jobs/alpha/resume")
    all_entries = api.get("/history").json()["data"]
    assert all_entries["total"] == 3
    assert [h["action"] for h in all_entries["history"]] == ["resume", "pause", "pause"]  # newest first
    denied = api.get("/history", params={"status": "denied"}).json()["data"]["history"]
    assert [(h["job_id"], h["user"]) for h in denied] == [("beta", "vera")]
    assert api.get("/history", params={"action": "resume"}).json()["data"]["total"] == 1
    job = api.get("/jobs/alpha/history", params={"limit": 1, "offset": 1}).json()["data"]
    assert job["total"] == 2 and job["history"][0]["action"] == "pause"


def test_static_mode_refuses_to_start_without_a_tokens_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="AUTH_TOKENS_FILE"):
        Settings(auth_mode="static", auth_tokens_file=None)
    done = subprocess.run([sys.executable, "-m", "syncjob_api"], capture_output=True, text=True, timeout=60,
                          env={"AUTH_MODE": "static", "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "AUTH_TOKENS_FILE" in done.stderr


def test_weak_or_duplicate_static_tokens_are_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump([{"token": "admin", "user": "a", "role": "admin"}]))
    with pytest.raises(ValidationError):
        create_app(Settings(auth_mode="static", auth_tokens_file=short, kubeconfig=str(short)))
    twice = tmp_path / "twice.yaml"
    entry = {"token": "x" * 20, "user": "a", "role": "viewer"}
    twice.write_text(yaml.safe_dump([entry, entry]))
    with pytest.raises(ValueError, match="twice"):
        create_app(Settings(auth_mode="static", auth_tokens_file=twice, kubeconfig=str(short)))


def test_unknown_routes_and_methods_use_the_envelope(api: Api) -> None:
    r = api.get("/nothing-here")
    assert r.status_code == 404 and r.json()["success"] is False
    r = api.http.put("/api/scheduler/stats", headers={"Authorization": f"Bearer {api.tokens['viewer']}"})
    assert r.status_code == 405 and r.json()["data"] is None


