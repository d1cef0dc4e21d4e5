"""Chaos: tokens arrive while the operator is SIGKILLed and restarted, sync pods are killed mid-run and MongoDB
stops for longer than a resync period. Once everything settles, every record must still be believable.

What is checked, and printed for the CI log: every token produced exactly one Job and one record (none lost, none
duplicated), every Job has exactly one record, no record is left `running`, every record's status agrees with how
its Job ended, and every kubectl trigger has exactly one audit entry.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient

from syncjob import names
from syncjob.runs import manual_job_name, run_id
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually, mongo_uri_for
from tests.operator.test_honest_runs import real_sync

SYNCJOBS = 5
TOKENS = 100
OPERATOR_KILLS = 10
POD_KILLS = 2
RESYNC_SECONDS = 2
MONGO_OUTAGE_SECONDS = 6  # longer than a resync period



def _job_outcome(job: client.V1Job) -> str:
    for c in job.status.conditions or []:
        if c.status == "True" and c.type in ("Complete", "Failed"):
            return c.type
    return "running"


AGREES = {"Complete": {"success"}, "Failed": {"failed"}}


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~2 min here; the settle wait alone may take 300 s on a loaded machine
def test_records_stay_true_through_operator_kills_pod_kills_and_a_mongodb_outage(
        cluster: LocalCluster, k8s: client.ApiClient, namespace: str, syncjob_crd: str, own_mongo: MongoServer,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20261201)
    db = MongoClient(own_mongo.uri, tz_aware=True, serverSelectionTimeoutMS=2000)["chaos"]
    uri = mongo_uri_for(own_mongo, db)
    secret = {"MONGO_URI": base64.b64encode(uri.encode()).decode()}
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="syncjob-mongo"), data=secret))
    op = OperatorProcess(cluster, namespace, uri, tmp_path / "operator-logs", ["syncjob-sync", "run"],
                         {"RESYNC_SECONDS": str(RESYNC_SECONDS)}).start()
    syncjobs = SyncJobs(k8s, namespace)
    jobs_names = [f"chaos-{i}" for i in range(SYNCJOBS)]
    for name in jobs_names:
        syncjobs.create(real_sync(name, delay=0.4, concurrencyPolicy="Allow", successfulJobsHistoryLimit=100,
                                  failedJobsHistoryLimit=100))
    for name in jobs_names:
        eventually(lambda n=name: (syncjobs.ready(n) or {}).get("status") == "True", 60, f"{name} Ready")

    tokens: list[tuple[str, str]] = []
    stop = threading.Event()
    figures = {"operator_kills": 0, "pods_killed": 0, "mongo_outages": 0}
    errors: list[BaseException] = []

    done: list[threading.Event] = []

    def guarded(fn: Any) -> Any:
        finished = threading.Event()
        done.append(finished)

        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by the main thread below
                errors.append(exc)
            finished.set()
            # The processes this thread started die with it (PR_SET_PDEATHSIG is per thread): it lives on until
            # the end of the test.
            stop.wait()
        return run

    @guarded
    def kill_operator() -> None:
        while figures["operator_kills"] < OPERATOR_KILLS:
            time.sleep(rng.uniform(1.0, 3.0))
            assert op.process is not None and op.process.pid is not None
            os.killpg(op.process.pid, signal.SIGKILL)
            op.process.stop()  # reaps it
            figures["operator_kills"] += 1
            time.sleep(rng.uniform(0.2, 1.5))
            op.start()

    @guarded
    def kill_pods() -> None:
        while figures["pods_killed"] < POD_KILLS:
            time.sleep(rng.uniform(3.0, 6.0))
            running = [p for p in syncjobs.core.list_namespaced_pod(namespace).items if p.status.phase == "Running"]
            if running:
                victim = rng.choice(running)
                syncjobs.core.delete_namespaced_pod(victim.metadata.name, namespace)
                figures["pods_killed"] += 1

    @guarded
    def mongo_outage() -> None:
        time.sleep(12)
        own_mongo.stop()
        time.sleep(MONGO_OUTAGE_SECONDS)
        own_mongo.start()
        figures["mongo_outages"] += 1

    threads = [threading.Thread(target=t, daemon=True) for t in (kill_operator, kill_pods, mongo_outage)]
    for t in threads:
        t.start()
    try:
        previous: dict[str, str] = {}
        for i in range(TOKENS):  # a few per second, spread over the SyncJobs
            name = jobs_names[i % SYNCJOBS]
            token = f"chaos-{i:03d}"
            if name in previous:  # a token replaces the last only once that was acknowledged (Flux's token pattern)
                def acknowledged(n: str = name) -> bool:
                    if errors:
                        raise RuntimeError(f"a chaos thread failed: {errors!r}")
                    return bool(syncjobs.get(n).get("status", {}).get("lastHandledRequestedAt") == previous[n])
                eventually(acknowledged, 90, f"{name} to acknowledge {previous[name]}")
            syncjobs.annotate(name, {names.REQUESTED_AT: token})
            previous[name] = token
            tokens.append((name, token))
            time.sleep(0.3)
        for finished in done:
            finished.wait(timeout=120)
        assert not errors, errors
        if not op.process or not op.process.alive():
            op.start()

        def settled() -> bool:
            last_tokens = {name: token for name, token in tokens}
            for name, token in last_tokens.items():
                if syncjobs.get(name).get("status", {}).get("lastHandledRequestedAt") != token:
                    return False
            jobs = syncjobs.jobs()
            if any(_job_outcome(j) == "running" for j in jobs):
                return False
            return db["scheduler_executions"].count_documents({"status": "running"}) == 0
        eventually(settled, 300, "every run to end and every record to close")
        op.stop()
        check_records(syncjobs, db, namespace, tokens, figures, capsys)
    finally:
        op.stop()
        stop.set()  # the threads end, and with them the processes they started


def check_records(syncjobs: SyncJobs, db: Any, namespace: str, tokens: list[tuple[str, str]],
                  figures: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    jobs = {j.metadata.name: j for j in syncjobs.jobs()}
    records = {d["_id"]: d for d in db["scheduler_executions"].find({"namespace": namespace})}
    expected = {run_id(namespace, manual_job_name(name, token)): (name, token) for name, token in tokens}
    lost = [rid for rid in expected if rid.partition(".")[2] not in jobs]
    # More than one Job for one token (each Job carries the token it was made for), or more than one pod's worth
    # of work recorded for a run that allows one attempt.
    token_of = [(j.metadata.annotations or {}).get(names.ANNOTATION_TOKEN) for j in jobs.values()]
    duplicate = sorted({t for t in token_of if t and token_of.count(t) > 1} | {
        rid for rid, d in records.items() if d.get("attempt", 1) > 1})
    jobless_records = [rid for rid in records if rid.partition(".")[2] not in jobs]
    recordless_jobs = [name for name in jobs if run_id(namespace, name) not in records]
    stuck = [rid for rid, d in records.items() if d["status"] == "running"]
    disagreeing = [rid for rid, d in records.items()
                   if rid.partition(".")[2] in jobs
                   and d["status"] not in AGREES.get(_job_outcome(jobs[rid.partition(".")[2]]), set())]
    unexpected_jobs = [name for name in jobs if run_id(namespace, name) not in expected]
    audit = {}
    for entry in db["scheduler_history"].find({"action": "trigger", "namespace": namespace}):
        rid = (entry.get("details") or {}).get("run_id")
        audit[rid] = audit.get(rid, 0) + 1
    unaudited = [run_id(namespace, name) for name in jobs if audit.get(run_id(namespace, name), 0) != 1]
    report = (f"\nchaos: {len(tokens)} tokens, {len(jobs)} Jobs, {len(records)} records; "
              f"operator SIGKILLed {figures['operator_kills']}x, {figures['pods_killed']} pods killed, "
              f"MongoDB stopped {figures['mongo_outages']}x for {MONGO_OUTAGE_SECONDS}s; "
              f"lost {len(lost)}, duplicate {len(duplicate)}, "
              f"records without a Job {len(jobless_records)}, Jobs without a record {len(recordless_jobs)}, "
              f"stuck {len(stuck)}, disagreeing {len(disagreeing)}, unexpected Jobs {len(unexpected_jobs)}, "
              f"audit entries not exactly one {len(unaudited)}; "
              f"statuses {sorted({d['status'] for d in records.values()})}")
    with capsys.disabled():  # into the CI log, passed or not
        print(report, flush=True)
    assert figures["operator_kills"] >= OPERATOR_KILLS and figures["pods_killed"] >= POD_KILLS
    assert figures["mongo_outages"] == 1
    assert not duplicate and not jobless_records and not recordless_jobs and not stuck and not unexpected_jobs
    assert not disagreeing, {rid: (records[rid]["status"], records[rid].get("reason")) for rid in disagreeing}
    assert not unaudited, unaudited
    assert not lost and len(jobs) == TOKENS, lost
