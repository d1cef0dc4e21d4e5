"""Interrupting a run leaves no stray etcd, apiserver, controller, kwok, pod or SecantusDB process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import json, sys, time
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
cluster = LocalCluster().start()
mongo = MongoServer().start()
print(json.dumps([p.pid for p in cluster.processes] + [mongo.process.pid]), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split()[2] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killing_the_test_process_stops_every_component(sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = json.loads(proc.stdout.readline())
    assert len(pids) == 7 and all(_alive(p) for p in pids)  # etcd, apiserver, kcm, scheduler, kwok, runner + mongo
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if _alive(p)] == []
