"""Operator benchmarks (issue #3), each against a floor measured in the same run on the same local cluster.

1. 1,000 SyncJobs applied at once: time until every CronJob exists and every SyncJob is Ready=True (seen by
   watches, which cost the API server little), against the time to apply 1,000 equivalent CronJobs directly
   (kubectl apply --server-side of one list).
2. Trigger latency with 1,000 SyncJobs in the cluster: annotation patched → Job seen by a watch, p50/p99, against
   creating the same Job directly → Job seen by the same watch.
3. The operator's resident memory with 1,000 SyncJobs: now, and its peak (the apply burst included).

Each round runs on a fresh cluster; the verdict takes the median apply ratio and the worst trigger p99 and peak
memory over the rounds.

Run: python -m bench.bench_operator [--count 1000] [--triggers 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.watch.watch import iter_resp_lines
from syncjob_operator import builders
from syncjob_operator.settings import OperatorSettings

from syncjob import names
from syncjob.model import SyncJob
from syncjob.runs import manual_job_name
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import Process, free_port, wait_until
from tests.conftest import CRD_FILE, make_syncjob


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class JobWatcher(threading.Thread):
    """Records when each Job of a namespace is first seen by a watch."""

    def __init__(self, batch: client.BatchV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.batch, self.ns = batch, namespace
        self.seen: dict[str, float] = {}
        self.ready, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                jobs = self.batch.list_namespaced_job(self.ns)
                for job in jobs.items:
                    self.seen.setdefault(job.metadata.name, time.monotonic())
                self.ready.set()
                for event in watch.Watch().stream(self.batch.list_namespaced_job, self.ns, timeout_seconds=300,
                                                  resource_version=jobs.metadata.resource_version):
                    self.seen.setdefault(event["object"].metadata.name, time.monotonic())
            except Exception as exc:  # a dropped watch is relisted, as an informer would
                if not self.stopping.is_set():
                    print(f"watch restarted: {exc}", file=sys.stderr)


class CountWatcher(threading.Thread):
    """Notes the moment `want` objects of a list satisfy `ok`, from one list and then a watch of raw JSON events.

    A watch costs the API server one serialization per change; polling 1,000-object lists every half second
    would cost it far more, and would slow down what it measures (the floor, a plain apply, polls nothing).
    """

    def __init__(self, list_call: Any, want: int, ok: Any) -> None:
        super().__init__(daemon=True)
        self.list_call, self.want, self.ok = list_call, want, ok
        self.good: set[str] = set()
        self.done_at: float | None = None
        self.listed = threading.Event()

    def _see(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind != "DELETED" and self.ok(obj):
            self.good.add(name)
        else:
            self.good.discard(name)
        if self.done_at is None and len(self.good) >= self.want:
            self.done_at = time.monotonic()

    def run(self) -> None:
        listing = json.loads(self.list_call(_preload_content=False).data)
        for obj in listing["items"]:
            self._see("ADDED", obj)
        self.listed.set()
        response = self.list_call(watch=True, resource_version=listing["metadata"]["resourceVersion"],
                                  timeout_seconds=1800, _preload_content=False)
        for line in iter_resp_lines(response):
            event = json.loads(line)
            self._see(event["type"], event["object"])
            if self.done_at is not None:
                response.close()
                return


def is_ready(syncjob: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (syncjob.get("status") or {}).get("conditions") or [])


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, from /proc (to see where the time of a phase goes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(name: str, watcher: JobWatcher, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while name not in watcher.seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {name} never appeared")
        time.sleep(0.002)
    return watcher.seen[name]


def one_round(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement of all three, on a fresh cluster and MongoDB."""
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    cluster = LocalCluster(run_pods=False)
    mongo = MongoServer(work / "mongo")
    operator: Process | None = None
    watcher: JobWatcher | None = None
    try:
        cluster.start()
        mongo.start()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{names.CRD_NAME}")
        for ns in ("bench-floor", "bench"):
            core.create_namespace({"metadata": {"name": ns}})
        uri = f"mongodb://127.0.0.1:{mongo.port}/bench?directConnection=true"
        core.create_namespaced_secret("bench", {"metadata": {"name": "syncjob-mongo"},
                                                "data": {"MONGO_URI": base64.b64encode(uri.encode()).decode()}})
        # Spread over the minutes and hours of 1 January: no run falls due while it is measured.
        manifests = [make_syncjob(f"sj-{i:04d}", schedule=f"{i % 60} {i % 24} 1 1 *", task="daily")
                     for i in range(args.count)]

        # Floor 1: the equivalent CronJobs applied directly.
        settings = OperatorSettings(mongo_uri=uri)
        cronjobs = []
        for m in manifests:
            sj = SyncJob.from_k8s({**m, "metadata": {"name": m["metadata"]["name"], "namespace": "bench-floor",
                                                     "uid": "00000000-0000-0000-0000-000000000000"}})
            cj = builders.build_cronjob(sj, settings)
            cj["metadata"].pop("ownerReferences")
            cronjobs.append(cj)
        floor_file = work / "cronjobs.yaml"
        floor_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": cronjobs}))
        floor_watch = CountWatcher(functools.partial(batch.list_namespaced_cron_job, "bench-floor"), args.count,
                                   lambda _: True)  # the same watch as ours below, so both sides pay for one
        floor_watch.start()
        floor_watch.listed.wait(30)
        t0 = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-n", "bench-floor", "-f", str(floor_file))
        applied = time.monotonic()
        wait_until(lambda: floor_watch.done_at is not None, 60, "every floor CronJob seen", interval=0.05)
        floor_apply = max(applied, floor_watch.done_at or 0) - t0
        print(f"floor: applied {args.count} CronJobs in {floor_apply:.2f}s", flush=True)

        # The operator, then the SyncJobs applied at once.
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MONGO_URI": uri, "WATCH_NAMESPACES": "bench",
               "OPERATOR_NAMESPACE": "bench", "SYNC_COMMAND": json.dumps(["true"]),
               "LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz"}
        operator = Process("operator", [sys.executable, "-m", "syncjob_operator"], work, env=env).start()
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200,
                   60, "operator", process=operator)
        sj_file = work / "syncjobs.yaml"
        sj_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": manifests}))
        custom = client.CustomObjectsApi(api)
        watchers = [
            CountWatcher(functools.partial(batch.list_namespaced_cron_job, "bench"), args.count, lambda _: True),
            CountWatcher(functools.partial(custom.list_namespaced_custom_object, names.GROUP, names.VERSION, "bench",
                                           names.PLURAL), args.count, is_ready),
        ]
        for w in watchers:
            w.start()
            w.listed.wait(30)
        apiserver = next(p for p in cluster.processes if p.name == "kube-apiserver")
        cpu0 = {"operator": cpu_seconds(operator.pid), "kube-apiserver": cpu_seconds(apiserver.pid)}
        t0 = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-n", "bench", "-f", str(sj_file))
        applied = time.monotonic()
        wait_until(lambda: all(w.done_at for w in watchers), 1800, "every CronJob and every SyncJob Ready",
                   interval=0.05, process=operator)
        ours_apply = max([applied] + [w.done_at or 0 for w in watchers]) - t0
        cpu = {"operator": cpu_seconds(operator.pid) - cpu0["operator"],
               "kube-apiserver": cpu_seconds(apiserver.pid) - cpu0["kube-apiserver"]}
        print(f"ours: {args.count} SyncJobs Ready with CronJobs in {ours_apply:.2f}s", flush=True)

        # Trigger latency, with all SyncJobs in the cluster; floor: the same Job created directly.
        watcher = JobWatcher(batch, "bench")
        watcher.start()
        watcher.ready.wait()
        time.sleep(1)
        floor_lat, ours_lat = [], []
        for i in range(args.triggers):
            name = f"sj-{i % args.count:04d}"
            token = f"bench-{i}"
            job = builders.build_manual_job(
                SyncJob.from_k8s(custom.get_namespaced_custom_object(names.GROUP, names.VERSION, "bench",
                                                                     names.PLURAL, name)),
                settings, f"floor-{i}", False, None, dt.datetime.now(dt.UTC))
            job["metadata"]["name"] = f"floor-{i:04d}"
            t = time.monotonic()
            batch.create_namespaced_job("bench", job)
            floor_lat.append(wait_for(job["metadata"]["name"], watcher) - t)
            t = time.monotonic()
            custom.patch_namespaced_custom_object(names.GROUP, names.VERSION, "bench", names.PLURAL, name,
                                                  {"metadata": {"annotations": {names.REQUESTED_AT: token}}})
            ours_lat.append(wait_for(manual_job_name(name, token), watcher) - t)
        # kopf runs in one process; VmHWM is its peak resident memory so far, the apply burst included.
        memory = {line.split(":")[0]: int(line.split()[1]) / 1024
                  for line in Path(f"/proc/{operator.pid}/status").read_text().splitlines()
                  if line.startswith(("VmRSS", "VmHWM"))}
        report = {
            "syncjobs": args.count,
            "apply_floor_cronjobs_s": round(floor_apply, 2),
            "apply_syncjobs_until_ready_s": round(ours_apply, 2),
            "apply_ratio": round(ours_apply / floor_apply, 2),
            "trigger_floor_p50_ms": round(statistics.median(floor_lat) * 1000, 1),
            "trigger_floor_p99_ms": round(pct(floor_lat, 99) * 1000, 1),
            "trigger_p50_ms": round(statistics.median(ours_lat) * 1000, 1),
            "trigger_p99_ms": round(pct(ours_lat, 99) * 1000, 1),
            "operator_rss_mb": round(memory["VmRSS"], 1),
            "operator_peak_rss_mb": round(memory["VmHWM"], 1),
            "apply_cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        }
        print(json.dumps(report), flush=True)
        return report
    finally:
        if watcher:
            watcher.stopping.set()
        if operator:
            operator.stop()
        mongo.cleanup()
        cluster.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--triggers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh clusters to measure on; a 2-core machine varies by 10-20%% from run to run")
    args = parser.parse_args()
    rounds = [one_round(args) for _ in range(args.rounds)]
    summary = {
        "rounds": len(rounds),
        "apply_ratio_median": statistics.median(r["apply_ratio"] for r in rounds),
        "apply_ratios": [r["apply_ratio"] for r in rounds],
        "trigger_p99_ms_worst": max(r["trigger_p99_ms"] for r in rounds),
        "trigger_floor_p99_ms_worst": max(r["trigger_floor_p99_ms"] for r in rounds),
        "operator_peak_rss_mb_worst": max(r["operator_peak_rss_mb"] for r in rounds),
    }
    summary["pass"] = (summary["apply_ratio_median"] <= 2.0 and summary["trigger_p99_ms_worst"] <= 1000
                       and summary["operator_peak_rss_mb_worst"] <= 150)
    print(json.dumps(summary, indent=2))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
