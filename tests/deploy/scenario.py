"""The product as deployed, exercised the way a user would: one scenario for the real-node test and for kind.

`manifests/default` (or the test bed's overlay of it) is installed and its Secrets exist; from there this module
checks what a user who followed docs/deploy.md would see: the operator and the API Deployments become Ready through
their own probes, the samples become Ready, and four runs each run the real sync image in a real container and
leave one honest record in MongoDB:

1. a scheduled tick (a SyncJob on `* * * * *`), success, with market data from the image's sample files;
2. a `kubectl annotate` trigger, success;
3. an API trigger (`POST /api/scheduler/jobs/{id}/trigger` as an admin, through the API's Service target port),
   success, and the run visible through the API;
4. a cancel of a run that is stuck (its namespace's MONGO_URI points at a closed loopback port, so the pod waits
   on its database): the operator deletes its Job, the container gets SIGTERM, the record ends `cancelled`;
5. a trigger written by a cluster admin under the API's field manager (to be credited as someone the API names)
   is refused by the shipped admission policy, and starts no run.

The assertions about records stay general (status, one record per run, the trigger): the record lifecycle is the
operator's and the sync image's business and is tested there. Used by tests/deploy/test_real_node.py with the
test bed's connection settings, and by hack/kind-e2e.sh through `python -m tests.deploy.scenario`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "syncjob-system"
DEMO_JOB = "demo-file-daily"
TICK_JOB = "tick-file-daily"
STUCK_JOB = "stuck-file-daily"
LABEL_SYNCJOB = "sync.tradingagents.io/syncjob"


class ScenarioError(AssertionError):
    """A step did not see what a user should see."""


@dataclass
class Target:
    """Where the product runs and how this process reaches it."""

    kubectl: Callable[..., str]  # kubectl(*args, input_=None) as a cluster admin; returns stdout
    api_url: str  # the API, from this process (the Service's target port on 127.0.0.1 in the test bed)
    mongo_uri: str  # the database the operator, the API and the sync pods write, from this process
    stuck_mongo_uri: str  # a MONGO_URI the sync pods cannot reach (a closed loopback port)
    pod_mongo_uri: str = ""  # MONGO_URI for the sync pods' Secret; empty: the caller made the Secret
    namespace: str = "market-data"
    stuck_namespace: str = "market-data-stuck"
    timings: dict[str, float] = field(default_factory=dict)

    def database(self) -> Any:
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        return client.get_default_database("tradingagents")


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def eventually(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(interval)
    raise ScenarioError(f"Timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def kustomize(target: Target, path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(target.kubectl("kustomize", str(path))) if d]


def records(target: Target, namespace: str, job: str) -> list[dict[str, Any]]:
    query = {"namespace": namespace, "$or": [{"job_id": job}, {"job_name": job}]}
    return list(target.database()["scheduler_executions"].find(query))


def _new_final_records(target: Target, namespace: str, job: str, before: set[Any], statuses: set[str],
                       timeout: float, what: str) -> list[dict[str, Any]]:
    def final() -> list[dict[str, Any]] | None:
        new = [r for r in records(target, namespace, job) if r["_id"] not in before]
        return new if new and all(r.get("status") in statuses for r in new) else None
    return list(eventually(final, timeout, what, interval=2))


def wait_deployments(target: Target, timeout: float = 300) -> None:
    for name in ("syncjob-operator", "syncjob-api"):
        target.kubectl("rollout", "status", "-n", SYSTEM, f"deployment/{name}", f"--timeout={int(timeout)}s")


def prepare_namespace(target: Target, namespace: str, mongo_uri: str) -> None:
    """What docs/deploy.md asks of each SyncJob namespace: manifests/sync-namespace and the MONGO_URI Secret.

    Kept as found where the caller prepared it already (hack/kind-e2e.sh makes the Secrets as docs/deploy.md does);
    an empty `mongo_uri` leaves the Secret to the caller.
    """
    if not target.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name").strip():
        target.kubectl("create", "namespace", namespace)
    target.kubectl("apply", "-k", str(ROOT / "manifests" / "sync-namespace"), "-n", namespace)
    exists = target.kubectl("get", "secret", "syncjob-mongo", "-n", namespace, "--ignore-not-found", "-o", "name")
    if mongo_uri and not exists.strip():
        target.kubectl("create", "secret", "generic", "syncjob-mongo", "-n", namespace,
                       f"--from-literal=MONGO_URI={mongo_uri}")


def apply_samples(target: Target) -> None:
    """The incumbent's samples paused (they call the data sites) and the file-source demo job, all Ready."""
    samples = ROOT / "manifests" / "samples"
    docs = kustomize(target, samples) + kustomize(target, samples / "demo")
    for doc in docs:
        doc["spec"]["paused"] = True  # manual runs still start; nothing scheduled reaches the network
    tick = json.loads(json.dumps(next(d for d in docs if d["metadata"]["name"] == DEMO_JOB)))
    tick["metadata"]["name"] = TICK_JOB
    tick["spec"].update({"schedule": "* * * * *", "timeZone": "UTC", "paused": False})
    target.kubectl("apply", "-n", target.namespace, "-f", "-", input_=yaml.safe_dump_all([*docs, tick]))
    target.kubectl("wait", "sj", "--all", "-n", target.namespace, "--for=condition=Ready", "--timeout=120s")


def scheduled_tick(target: Target) -> dict[str, Any]:
    """The `* * * * *` SyncJob's first scheduled run succeeds and lands daily bars; then it is paused."""
    runs = _new_final_records(target, target.namespace, TICK_JOB, set(), {"success"}, 150,
                              "a scheduled run of the every-minute SyncJob to succeed")
    target.kubectl("patch", "sj", TICK_JOB, "-n", target.namespace, "--type=merge", "-p", '{"spec":{"paused":true}}')
    run = runs[0]
    if run.get("trigger") != "schedule":
        raise ScenarioError(f"record {run['_id']} has trigger {run.get('trigger')!r}, want schedule")
    bars = target.database()["stock_daily_quotes"].count_documents({"data_source": "file"})
    if bars == 0:
        raise ScenarioError("no daily bars from the file source in stock_daily_quotes")
    return run


def kubectl_trigger(target: Target) -> dict[str, Any]:
    before = {r["_id"] for r in records(target, target.namespace, DEMO_JOB)}
    target.kubectl("annotate", "sj", DEMO_JOB, "-n", target.namespace, "--overwrite",
                   f"sync.tradingagents.io/requested-at=scenario-{time.time_ns()}")
    runs = _new_final_records(target, target.namespace, DEMO_JOB, before, {"success"}, 120,
                              "the kubectl-triggered run to succeed")
    if len(runs) != 1 or runs[0].get("trigger") != "manual":
        raise ScenarioError(f"want one manual record, got {[(r['_id'], r.get('trigger')) for r in runs]}")
    return runs[0]


def admin_token(target: Target) -> str:
    """A ServiceAccount bound to syncjob-admin in every namespace (the API serves them all here)."""
    target.kubectl("create", "serviceaccount", "scenario-admin", "-n", target.namespace)
    target.kubectl("create", "clusterrolebinding", "scenario-admin",
                   "--clusterrole=syncjob-admin", f"--serviceaccount={target.namespace}:scenario-admin")
    return target.kubectl("create", "token", "scenario-admin", "-n", target.namespace).strip()


def call_api(target: Target, method: str, path: str, token: str) -> tuple[int, dict[str, Any]]:
    """The status code and the JSON envelope of one API call."""
    request = urllib.request.Request(f"{target.api_url}{path}", method=method,
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def no_active_run(target: Target, namespace: str, job: str) -> bool:
    out = target.kubectl("get", "sj", job, "-n", namespace, "-o", "jsonpath={.status.active}")
    return out.strip() in ("", "[]")


def api_trigger(target: Target) -> dict[str, Any]:
    token = admin_token(target)
    code, health = eventually(lambda: (r := call_api(target, "GET", "/api/scheduler/health", token))[0] == 200 and r,
                              60, "the API's health")
    if not health.get("success"):
        raise ScenarioError(f"GET /api/scheduler/health: {health}")
    # The previous run's Job must have left status.active, or the API answers 409 (a run is active).
    eventually(lambda: no_active_run(target, target.namespace, DEMO_JOB), 60, "no active run of the demo job")
    before = {r["_id"] for r in records(target, target.namespace, DEMO_JOB)}
    code, answer = call_api(target, "POST", f"/api/scheduler/jobs/{DEMO_JOB}/trigger", token)
    if code != 200 or not answer.get("success"):
        raise ScenarioError(f"POST /api/scheduler/jobs/{DEMO_JOB}/trigger: {code} {answer}")
    runs = _new_final_records(target, target.namespace, DEMO_JOB, before, {"success"}, 120,
                              "the API-triggered run to succeed")
    if len(runs) != 1 or runs[0].get("trigger") != "manual":
        raise ScenarioError(f"want one manual record, got {[(r['_id'], r.get('trigger')) for r in runs]}")
    asker = f"system:serviceaccount:{target.namespace}:scenario-admin"
    asked = target.database()["scheduler_history"].find_one({"action": "trigger", "details.run_id": runs[0]["_id"]})
    if (asked or {}).get("user") != asker or (asked or {}).get("status") != "success":
        raise ScenarioError(f"the audit entry of run {runs[0]['_id']} is {asked}, want a success by {asker}")
    _, listed = call_api(target, "GET", f"/api/scheduler/jobs/{DEMO_JOB}/executions", token)
    if runs[0]["_id"] not in json.dumps(listed, ensure_ascii=False):
        raise ScenarioError(f"the API does not list run {runs[0]['_id']}: {listed}")
    return runs[0]


def cancel(target: Target) -> dict[str, Any]:
    """A run stuck on its database is cancelled: its Job is deleted, SIGTERM stops the container."""
    prepare_namespace(target, target.stuck_namespace, target.stuck_mongo_uri)
    demo = next(d for d in kustomize(target, ROOT / "manifests" / "samples" / "demo")
                if d["metadata"]["name"] == DEMO_JOB)
    demo["metadata"]["name"] = STUCK_JOB
    demo["spec"]["paused"] = True
    target.kubectl("apply", "-n", target.stuck_namespace, "-f", "-", input_=yaml.safe_dump(demo))
    target.kubectl("wait", "sj", STUCK_JOB, "-n", target.stuck_namespace, "--for=condition=Ready", "--timeout=60s")
    target.kubectl("annotate", "sj", STUCK_JOB, "-n", target.stuck_namespace, "--overwrite",
                   f"sync.tradingagents.io/requested-at=scenario-{time.time_ns()}")

    def running_pod() -> str:
        out = target.kubectl("get", "pods", "-n", target.stuck_namespace, "-l", f"{LABEL_SYNCJOB}={STUCK_JOB}",
                             "-o", "jsonpath={range .items[?(@.status.phase=='Running')]}{.metadata.name}{end}")
        return out.strip()
    pod = eventually(running_pod, 120, "the stuck run's container to run")
    time.sleep(3)  # the sync image is past its start-up and waiting on MongoDB
    target.kubectl("annotate", "sj", STUCK_JOB, "-n", target.stuck_namespace, "--overwrite",
                   f"sync.tradingagents.io/cancel-at=scenario-{time.time_ns()}")
    eventually(lambda: not target.kubectl("get", "pods", "-n", target.stuck_namespace, "-l",
                                          f"{LABEL_SYNCJOB}={STUCK_JOB}", "-o", "name").strip(),
               90, f"pod {pod} to be gone after the cancel")
    runs = _new_final_records(target, target.stuck_namespace, STUCK_JOB, set(), {"cancelled"}, 60,
                              "the cancelled run's record to say cancelled")
    if len(runs) != 1:
        raise ScenarioError(f"want one record of the cancelled run, got {[r['_id'] for r in runs]}")
    return runs[0]


def impostor_refused(target: Target) -> None:
    """Only the API's ServiceAccount may write as the API's field manager (manifests/admission-policy)."""
    before = {r["_id"] for r in records(target, target.namespace, DEMO_JOB)}
    try:
        target.kubectl("annotate", "sj", DEMO_JOB, "-n", target.namespace, "--overwrite",
                       "--field-manager=syncjob-api", f"sync.tradingagents.io/requested-at=impostor-{time.time_ns()}",
                       "sync.tradingagents.io/requested-by=someone-else")
    except Exception as exc:  # KubectlError or ScenarioError, with kubectl's stderr
        if "syncjob-api-identity" not in str(exc):
            raise ScenarioError(f"refused, but not by the admission policy: {exc}") from exc
    else:
        raise ScenarioError("a cluster admin wrote a trigger as field manager syncjob-api")
    time.sleep(5)  # long enough for a token to have become a Job
    after = {r["_id"] for r in records(target, target.namespace, DEMO_JOB)}
    if after - before:
        raise ScenarioError(f"the refused trigger left records {sorted(after - before)}")


def run(target: Target) -> dict[str, float]:
    """Every step in order, with its wall time in `target.timings`."""
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("operator and API Deployments Ready", lambda: wait_deployments(target)),
        ("namespace prepared", lambda: prepare_namespace(target, target.namespace, target.pod_mongo_uri)),
        ("samples Ready", lambda: apply_samples(target)),
        ("scheduled tick", lambda: scheduled_tick(target)),
        ("kubectl trigger", lambda: kubectl_trigger(target)),
        ("API trigger", lambda: api_trigger(target)),
        ("cancel", lambda: cancel(target)),
        ("impostor of the API refused", lambda: impostor_refused(target)),
    ]
    for name, step in steps:
        started = time.monotonic()
        log(f"{name} ...")
        result = step()
        target.timings[name] = time.monotonic() - started
        detail = (f" (record {result['_id']}: {result.get('status')}, {result.get('reason') or 'no reason'})"
                  if isinstance(result, dict) else "")
        log(f"{name}: {target.timings[name]:.0f} s{detail}")
    return target.timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", default="", help="kubectl context (hack/kind-e2e.sh: kind-<cluster>)")
    parser.add_argument("--api-url", required=True, help="the API from here, e.g. a port-forward of its Service")
    parser.add_argument("--mongo-uri", required=True, help="the MongoDB the product writes, from here")
    parser.add_argument("--namespace", default="market-data", help="the SyncJob namespace")
    parser.add_argument("--pod-mongo-uri", default="",
                        help="MONGO_URI for the sync pods' Secret there (default: the Secret exists already)")
    parser.add_argument("--stuck-mongo-uri", default="mongodb://127.0.0.1:9/tradingagents?serverSelectionTimeoutMS=2000",
                        help="a MONGO_URI the sync pods cannot reach, for the cancel")
    args = parser.parse_args(argv)

    def kubectl(*kargs: str, input_: str | None = None) -> str:
        context = ["--context", args.context] if args.context else []
        done = subprocess.run(["kubectl", *context, *kargs], capture_output=True, text=True, input=input_)
        if done.returncode != 0:
            raise ScenarioError(f"kubectl {' '.join(kargs)}: {done.stderr.strip()}")
        return done.stdout

    run(Target(kubectl, args.api_url, args.mongo_uri, args.stuck_mongo_uri, pod_mongo_uri=args.pod_mongo_uri,
               namespace=args.namespace))
    log("PASSED")


if __name__ == "__main__":
    main()
