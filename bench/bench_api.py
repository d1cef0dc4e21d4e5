"""Scheduler API benchmarks (issue #5), against floors measured in the same run on the same servers.

1. GET /api/scheduler/jobs with 1,000 SyncJobs in the cluster: p99 <= 25 ms (served from the watch-fed cache).
2. GET /api/scheduler/executions?limit=50 over N execution records (default 200,000): p99 <= 1.5 x the p99 of the
   same queries (find page + count) issued directly with pymongo.
3. GET /api/scheduler/jobs/{id}/execution-stats over the same records: p99 <= 1.5 x the p99 of the same queries
   (the $group, the two percentile walks, the last record) issued directly with pymongo.

The API runs under uvicorn on 127.0.0.1 and is called over HTTP with httpx; API and floor samples alternate so
drift in the database server affects both alike.

Run: python -m bench.bench_api [--jobs 1000] [--executions 200000] [--samples 300] [--db-samples 20]
     [--parts jobs,executions,stats]
SecantusDB (a Python server) needs ~90 s to insert 200,000 records and seconds per query over them; the
MongoDB-backed parts take ~10 minutes at the defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from kubernetes import client, config
from syncjob_api.core.config import Settings
from syncjob_api.main import create_app

from syncjob import mongo, names
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import free_port, wait_until
from tests.conftest import CRD_FILE, make_syncjob

NAMESPACE = "bench"
TOKEN = "bench-" + "0" * 24
STATUSES = ["success"] * 85 + ["failed"] * 8 + ["missed"] * 3 + ["skipped"] * 2 + ["cancelled", "running"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def create_syncjobs(k8s: client.ApiClient, count: int) -> None:
    custom = client.CustomObjectsApi(k8s)

    def create(i: int) -> None:
        body = make_syncjob(f"job-{i:04d}", schedule=f"{i % 60} 9-15 * * 1-5", displayName=f"Job {i}",
                            description="benchmark job", paused=i % 10 == 0)
        custom.create_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE, names.PLURAL, body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def insert_executions(db: Any, count: int, jobs: int) -> None:
    coll = db[mongo.EXECUTIONS]
    now = dt.datetime.now(dt.UTC)
    rnd = random.Random(5)
    batch: list[dict[str, Any]] = []
    for i in range(count):
        status = rnd.choice(STATUSES)
        started = now - dt.timedelta(seconds=i * 13)
        manual = rnd.random() < 0.1
        job_name = f"job-{i % jobs:04d}-{i:08d}"
        batch.append({
            "_id": f"{NAMESPACE}.{job_name}", "k8s_job": job_name, "schema_version": 2,
            "job_id": f"job-{i % jobs:04d}", "job_name": f"job-{i % jobs:04d}",
            "namespace": NAMESPACE, "status": status, "trigger": "manual" if manual else "schedule",
            "is_manual": manual, "force": False, "scheduled_time": started, "started_at": started,
            "finished_at": None if status == "running" else started + dt.timedelta(seconds=30),
            "timestamp": started, "execution_time": rnd.randint(500, 120000) / 1000 if status != "running" else None,
            "progress": 100, "source_used": "akshare", "error_message": None,
        })
        if len(batch) == 5000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)


def prepare(cluster: LocalCluster, server: MongoServer, jobs: int, executions: int,
            execution_jobs: int) -> tuple[Any, Any]:
    """Start the cluster and SecantusDB, create the SyncJobs and insert the records: (Mongo client, database)."""
    print("Starting the local cluster and SecantusDB ...")
    cluster.start()
    server.start()
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{names.CRD_NAME}")
    cluster.kubectl("create", "namespace", NAMESPACE)
    k8s = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    started = time.monotonic()
    create_syncjobs(k8s, jobs)
    print(f"Created {jobs} SyncJobs in {time.monotonic() - started:.1f}s")
    mongo_client = server.client(tz_aware=True)
    db = mongo_client["tradingagents"]
    mongo.ensure_indexes(db, mongo.SCHEDULER_COLLECTIONS)
    started = time.monotonic()
    insert_executions(db, executions, execution_jobs)
    print(f"Inserted {executions} execution records in {time.monotonic() - started:.1f}s", flush=True)
    return mongo_client, db


def api_settings(workdir: Path, cluster: LocalCluster, server: MongoServer, token: str, role: str,
                 mongo_timeout_ms: int = 10000) -> Settings:
    """The API's settings for a benchmark: static token mode with one token, the bench namespace, a free port."""
    tokens = workdir / "tokens.yaml"
    tokens.write_text(yaml.safe_dump([{"token": token, "user": "bench", "role": role}]))
    return Settings(
        mongo_uri=f"mongodb://127.0.0.1:{server.port}/tradingagents?directConnection=true",
        auth_mode="static", auth_tokens_file=tokens, watch_namespace=NAMESPACE, operator_namespace=NAMESPACE,
        kubeconfig=str(cluster.kubeconfig), api_port=free_port(), mongo_timeout_ms=mongo_timeout_ms,
        cache_sync_timeout_seconds=60,
    )


class ApiServer:
    def __init__(self, settings: Settings) -> None:
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 60, "uvicorn")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def compare(name: str, api_call: Callable[[], Any], floor_call: Callable[[], Any], samples: int,
            warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        api_call()
        floor_call()
    api_ms: list[float] = []
    floor_ms: list[float] = []
    for _ in range(samples):
        api_ms.append(timed(api_call))
        floor_ms.append(timed(floor_call))
    print(f"  {name}: API p50 {pct(api_ms, 50):.1f} ms p99 {pct(api_ms, 99):.1f} ms; "
          f"pymongo p50 {pct(floor_ms, 50):.1f} ms p99 {pct(floor_ms, 99):.1f} ms; "
          f"ratio p99 {pct(api_ms, 99) / pct(floor_ms, 99):.2f} ({samples} samples)")
    return pct(api_ms, 99), pct(floor_ms, 99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--execution-jobs", type=int, default=20, help="jobs the execution records belong to")
    parser.add_argument("--samples", type=int, default=300, help="samples of GET /jobs")
    parser.add_argument("--db-samples", type=int, default=20, help="samples of each MongoDB-backed endpoint")
    parser.add_argument("--parts", default="jobs,executions,stats",
                        help="comma list of the benchmarks to run: jobs, executions, stats")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    cluster = LocalCluster(run_pods=False)
    server = MongoServer()
    failures: list[str] = []
    try:
        mongo_client, db = prepare(cluster, server, args.jobs, args.executions, args.execution_jobs)

        settings = api_settings(workdir, cluster, server, TOKEN, "viewer")
        base = f"http://127.0.0.1:{settings.api_port}/api/scheduler"
        with ApiServer(settings), httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                                               timeout=120) as http:
            wait_until(lambda: len(http.get("/jobs").json()["data"]) == args.jobs, 60, "every SyncJob cached")

            if "jobs" in parts:
                print("GET /api/scheduler/jobs")
                jobs_ms = [timed(lambda: http.get("/jobs").raise_for_status()) for _ in range(args.samples + 20)][20:]
                p50, p99 = pct(jobs_ms, 50), pct(jobs_ms, 99)
                print(f"  {args.jobs} jobs: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({args.samples} samples; "
                      "target p99 <= 25)")
                if p99 > 25:
                    failures.append(f"GET /jobs p99 {p99:.1f} ms > 25 ms")

            coll = db[mongo.EXECUTIONS]

            def floor_page() -> None:
                list(coll.find({}).sort("timestamp", -1).skip(0).limit(50))
                coll.count_documents({})

            if "executions" in parts:
                print(f"GET /api/scheduler/executions?limit=50 over {args.executions} records")
                api99, floor99 = compare("executions", lambda: http.get("/executions", params={"limit": 50})
                                         .raise_for_status(), floor_page, args.db_samples, 2)
                if api99 > 1.5 * floor99:
                    failures.append(f"executions p99 {api99:.0f} ms > 1.5 x {floor99:.0f} ms")

            job = "job-0003"
            match = {"job_id": {"$in": [job, job.replace("-", "_")]}}  # as the API asks: name and legacy id

            def floor_stats() -> None:
                groups = list(coll.aggregate([
                    {"$match": match},
                    {"$group": {"_id": "$status", "count": {"$sum": 1}, "avg": {"$avg": "$execution_time"},
                                "timed": {"$sum": {"$cond": [{"$gte": ["$execution_time", 0]}, 1, 0]}}}},
                ]))
                timed_success = next((g["timed"] for g in groups if g["_id"] == "success"), 0)
                for q in (0.5, 0.95):
                    rank = max(0, -(-int(q * timed_success * 100) // 100) - 1)
                    list(coll.find({**match, "status": "success", "execution_time": {"$gte": 0}},
                                   {"_id": 0, "execution_time": 1}).sort("execution_time", 1).skip(rank).limit(1))
                coll.find_one(match, {"status": 1, "timestamp": 1, "execution_time": 1}, sort=[("timestamp", -1)])

            if "stats" in parts:
                per_job = args.executions // args.execution_jobs
                print(f"GET /api/scheduler/jobs/{job}/execution-stats over {per_job} of its records")
                api99, floor99 = compare("execution-stats", lambda: http.get(f"/jobs/{job}/execution-stats")
                                         .raise_for_status(), floor_stats, args.db_samples, 2)
                if api99 > 1.5 * floor99:
                    failures.append(f"execution-stats p99 {api99:.0f} ms > 1.5 x {floor99:.0f} ms")
        mongo_client.close()
    finally:
        cluster.cleanup()
        server.cleanup()
    print("FAILED: " + "; ".join(failures) if failures else "All API benchmarks within their targets.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
