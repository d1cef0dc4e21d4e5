"""Fixtures for operator tests: the operator as a real process against the local cluster and SecantusDB."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo.database import Database

from syncjob import names
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import Process, free_port, wait_until


class OperatorProcess:
    def __init__(self, cluster: LocalCluster, namespace: str, mongo_uri: str, log_dir: Path,
                 sync_command: list[str], extra_env: dict[str, str]) -> None:
        self.env = {
            **os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MONGO_URI": mongo_uri,
            "WATCH_NAMESPACES": namespace, "OPERATOR_NAMESPACE": namespace, "RESYNC_SECONDS": "2",
            "SYNC_COMMAND": json.dumps(sync_command), "CANCEL_GRACE_SECONDS": "5", "LEASE_RENEW_SECONDS": "2",
            "PYTHONUNBUFFERED": "1", **extra_env,
        }
        self.log_dir = log_dir
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        self.starts += 1
        port = free_port()
        env = {**self.env, "LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz"}
        self.process = Process(f"operator-{self.starts}", [sys.executable, "-m", "syncjob_operator"],
                               self.log_dir, env=env).start()

        def live() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200

        wait_until(live, 60, "the operator's liveness endpoint", process=self.process)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("operator-*.log")))


def mongo_uri_for(server: MongoServer, db: Database[Any]) -> str:
    return f"mongodb://127.0.0.1:{server.port}/{db.name}?directConnection=true"


@pytest.fixture
def sync_command() -> list[str]:
    """The command sync pods run; tests override it (default: the real sync image)."""
    return ["syncjob-sync", "run"]


@pytest.fixture
def operator_env() -> dict[str, str]:
    return {}


@pytest.fixture
def operator(cluster: LocalCluster, k8s: client.ApiClient, namespace: str, syncjob_crd: str,
             mongo_server: MongoServer, mongo_db: Database[Any], tmp_path: Path, sync_command: list[str],
             operator_env: dict[str, str]) -> Iterator[OperatorProcess]:
    uri = mongo_uri_for(mongo_server, mongo_db)
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="syncjob-mongo"),
        data={"MONGO_URI": base64.b64encode(uri.encode()).decode()}))
    op = OperatorProcess(cluster, namespace, uri, tmp_path / "operator-logs", sync_command, operator_env).start()
    try:
        yield op
    finally:
        op.stop()
        if os.environ.get("SHOW_OPERATOR_LOG"):
            print(op.log())


@pytest.fixture
def syncjobs(k8s: client.ApiClient, namespace: str) -> SyncJobs:
    return SyncJobs(k8s, namespace)


class SyncJobs:
    """Small helpers to act as a kubectl user would, and to read what they would see."""

    def __init__(self, k8s: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(k8s)
        self.batch = client.BatchV1Api(k8s)
        self.core = client.CoreV1Api(k8s)
        self.ns = namespace

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.create_namespaced_custom_object(
            names.GROUP, names.VERSION, self.ns, names.PLURAL, manifest)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.get_namespaced_custom_object(
            names.GROUP, names.VERSION, self.ns, names.PLURAL, name)
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(names.GROUP, names.VERSION, self.ns, names.PLURAL, name,
                                                {"spec": spec})

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        self.api.patch_namespaced_custom_object(names.GROUP, names.VERSION, self.ns, names.PLURAL, name,
                                                {"metadata": {"annotations": annotations}})

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(names.GROUP, names.VERSION, self.ns, names.PLURAL, name)

    def cronjob(self, name: str) -> client.V1CronJob | None:
        try:
            return self.batch.read_namespaced_cron_job(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def jobs(self) -> list[client.V1Job]:
        return list(self.batch.list_namespaced_job(self.ns).items)

    def events(self, name: str) -> list[client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(self.ns).items
                if e.involved_object.kind == names.KIND and e.involved_object.name == name]

    def event(self, name: str, reason: str, timeout: float = 30) -> client.CoreV1Event:
        """The first Event with this reason, waited for: the operator posts Events after the writes they
        report (kopf queues them), so a test that has seen the status may not see the Event yet."""
        return eventually(lambda: next((e for e in self.events(name) if e.reason == reason), None), timeout,
                          f"a {reason} Event on {name}")

    def ready(self, name: str) -> dict[str, Any] | None:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll until check() returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    """A MongoDB-protocol server of the test's own (fixed port, storage on disk), so that a test may stop and
    start it without disturbing the others; its log stays in tmp_path."""
    server = MongoServer(workdir=tmp_path / "mongo", port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()
