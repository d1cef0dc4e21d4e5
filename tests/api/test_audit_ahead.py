"""An API process killed between a change and its outcome leaves its audit entry `pending`, never no entry.

The API writes a mutation's entry before it makes the change (syncjob.audit.begin) and gives it its outcome after
(syncjob.audit.finish). Here a real API process (`python -m syncjob_api`) takes a trigger, sets the token on the
SyncJob and waits for the Job, which never comes (no operator runs); it is SIGKILLed while it waits. What an
auditor then reads, through a new API process, is one entry for that trigger: who asked, on which job, `pending`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from pymongo.database import Database

from syncjob import mongo, names
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import Process, free_port, wait_until
from tests.api.conftest import STATIC_TOKENS, mongo_uri
from tests.conftest import make_syncjob

ADMIN_TOKEN, ADMIN_USER, _ = STATIC_TOKENS["admin"]


def _start_api(cluster: LocalCluster, server: MongoServer, db: Database[Any], namespace: str, tokens_file: Path,
               logs: Path, name: str) -> tuple[Process, str]:
    port = free_port()
    env = {**os.environ, "AUTH_MODE": "static", "AUTH_TOKENS_FILE": str(tokens_file),
           "MONGO_URI": mongo_uri(server, db), "WATCH_NAMESPACE": namespace, "OPERATOR_NAMESPACE": namespace,
           "KUBECONFIG": str(cluster.kubeconfig), "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "TRIGGER_WAIT_SECONDS": "3"}  # the most allowed: the window to kill it in
    process = Process(name, [sys.executable, "-m", "syncjob_api"], logs, env=env).start()
    url = f"http://127.0.0.1:{port}/api/scheduler"
    wait_until(lambda: httpx.get(f"{url}/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 timeout=5).status_code == 200, 60, f"{name} serving", process=process)
    return process, url


def test_an_api_killed_between_the_change_and_its_outcome_leaves_the_entry_pending(
        cluster: LocalCluster, k8s: client.ApiClient, syncjob_crd: str, namespace: str, mongo_server: MongoServer,
        mongo_db: Database[Any], tokens_file: Path, tmp_path: Path) -> None:
    custom = client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL,
                                           make_syncjob("quotes", paused=True))
    first, url = _start_api(cluster, mongo_server, mongo_db, namespace, tokens_file, tmp_path, "api-killed")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    wait_until(lambda: httpx.get(f"{url}/jobs/quotes", headers=headers, timeout=5).status_code == 200, 30,
               "the job in the API's cache")
    answer: list[Any] = []

    def trigger() -> None:
        try:
            answer.append(httpx.post(f"{url}/jobs/quotes/trigger", headers=headers, timeout=180))
        except httpx.HTTPError as exc:  # the connection dies with the process
            answer.append(exc)

    caller = threading.Thread(target=trigger, daemon=True)
    caller.start()
    wait_until(lambda: (custom.get_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, "quotes")["metadata"].get("annotations") or {}).get(
        names.REQUESTED_AT), 30, "the trigger's token on the SyncJob", interval=0.02)
    assert first.popen is not None
    os.killpg(first.popen.pid, signal.SIGKILL)  # the change is made; the API is waiting for the Job
    caller.join(30)
    assert answer and isinstance(answer[0], httpx.HTTPError), answer  # the caller never got an answer

    entries = list(mongo_db[mongo.HISTORY].find({"action": "trigger", "target": "quotes"}))
    assert len(entries) == 1, entries
    (entry,) = entries
    assert (entry["status"], entry["user"], entry["via"], entry["job_id"]) == ("pending", ADMIN_USER, "api", "quotes")

    # An auditor reading through a new API process sees it, and can ask for exactly such entries.
    second, url = _start_api(cluster, mongo_server, mongo_db, namespace, tokens_file, tmp_path, "api-after")
    try:
        pending = httpx.get(f"{url}/history", headers=headers, params={"status": "pending"}, timeout=10).json()
        assert [(h["action"], h["user"], h["job_id"]) for h in pending["data"]["history"]] == [
            ("trigger", ADMIN_USER, "quotes")]
    finally:
        second.stop()
