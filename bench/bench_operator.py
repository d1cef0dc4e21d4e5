"""Operator benchmarks (issue #3), each against a floor measured in the same run on the same local cluster.

1. 1,000 SyncJobs applied at once: time until every CronJob exists and every SyncJob is Ready=True, against the
   time to apply 1,000 equivalent CronJobs directly (kubectl apply --server-side of one list).
2. Trigger latency with 1,000 SyncJobs in the cluster: annotation patched → Job seen by a watch, p50/p99, against
   creating the same Job directly → Job seen by the same watch.
3. The operator's resident memory with 1,000 SyncJobs.

Run: python -m bench.bench_operator [--count 1000] [--triggers 100]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from kubernetes import client, config, watch
from syncjob_operator import builders
from syncjob_operator.settings import OperatorSettings

from syncjob import names
from syncjob.model import SyncJob
from syncjob.runs import manual_run_id
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
        self.batch, self.ns, self.seen = batch, namespace, {}
        self.ready = threading.Event()

    def run(self) -> None:
        while True:
            jobs = self.batch.list_namespaced_job(self.ns)
            for job in jobs.items:
                self.seen.setdefault(job.metadata.name, time.monotonic())
            self.ready.set()
            try:
                for event in watch.Watch().stream(self.batch.list_namespaced_job, self.ns, timeout_seconds=300,
                                                  resource_version=jobs.metadata.resource_version):
                    self.seen.setdefault(event["object"].metadata.name, time.monotonic())
            except Exception as exc:  # a dropped watch is relisted, as an informer would
                print(f"watch restarted: {exc}", file=sys.stderr)


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--triggers", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    cluster = LocalCluster(run_pods=False)
    mongo = MongoServer(work / "mongo")
    operator: Process | None = None
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
        manifests = [make_syncjob(f"sj-{i:04d}", schedule=f"{i % 60} 16 * * 1-5", task="daily")
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
        t0 = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-n", "bench-floor", "-f", str(floor_file))
        floor_apply = time.monotonic() - t0
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
        apiserver = next(p for p in cluster.processes if p.name == "kube-apiserver")
        cpu0 = {"operator": cpu_seconds(operator.pid), "kube-apiserver": cpu_seconds(apiserver.pid)}
        t0 = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-n", "bench", "-f", str(sj_file))

        def all_ready() -> bool:
            # Raw JSON: turning 1,000 objects into client models takes seconds of CPU that the operator would lose.
            raw = batch.list_namespaced_cron_job("bench", _preload_content=False)
            cjs = json.loads(raw.data)["items"]
            sjs = custom.list_namespaced_custom_object(names.GROUP, names.VERSION, "bench", names.PLURAL)["items"]
            ready = sum(1 for s in sjs for c in (s.get("status") or {}).get("conditions", [])
                        if c["type"] == "Ready" and c["status"] == "True")
            return len(cjs) == args.count and ready == args.count
        wait_until(all_ready, 1800, "every SyncJob Ready", interval=0.5, process=operator)
        ours_apply = time.monotonic() - t0
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
            ours_lat.append(wait_for(manual_run_id(name, token), watcher) - t)
        rss_kb = int(next(line.split()[1] for line in Path(f"/proc/{operator.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS")))
        # kopf runs python in one process; children (none expected) would add to it.
        report = {
            "syncjobs": args.count,
            "apply_floor_cronjobs_s": round(floor_apply, 2),
            "apply_syncjobs_until_ready_s": round(ours_apply, 2),
            "apply_ratio": round(ours_apply / floor_apply, 2),
            "trigger_floor_p50_ms": round(statistics.median(floor_lat) * 1000, 1),
            "trigger_floor_p99_ms": round(pct(floor_lat, 99) * 1000, 1),
            "trigger_p50_ms": round(statistics.median(ours_lat) * 1000, 1),
            "trigger_p99_ms": round(pct(ours_lat, 99) * 1000, 1),
            "operator_rss_mb": round(rss_kb / 1024, 1),
            "apply_cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        }
        report["pass"] = (report["apply_ratio"] <= 2.0 and report["trigger_p99_ms"] <= 1000
                          and report["operator_rss_mb"] <= 150)
        print(json.dumps(report, indent=2))
    finally:
        if operator:
            operator.stop()
        mongo.cleanup()
        cluster.cleanup()


if __name__ == "__main__":
    main()
