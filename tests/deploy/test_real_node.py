"""The product as a user deploys it: the images we ship, `manifests/default` through the test bed's overlay, a kubelet.

Everything else in the suite runs pods as local processes (kwok and the pod runner), which never shows whether the
images build, start read-only as non-root, pass their probes, mount their Secrets and reach MongoDB. This module
builds the images (skipped when their content hash is unchanged), starts a control plane with a real node
(containerd, runc, kubelet on 127.0.0.1), applies `manifests/testbed` with `kubectl apply -k`, and runs the
deployed scenario of tests/deploy/scenario.py, which hack/kind-e2e.sh runs too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images
from testbed.cluster import KubectlError, LocalCluster
from testbed.procs import free_port
from tests.deploy import scenario

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("syncjob-operator", "syncjob-api", "syncjob-sync", "syncjob-secantusdb")
MONGO_URI = "mongodb://127.0.0.1:17017/tradingagents"  # SecantusDB of manifests/testbed, on the node's network

pytestmark = [
    pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500),
    pytest.mark.skipif(os.geteuid() != 0, reason="a kubelet, containerd and mounts need root"),
]


@pytest.fixture(scope="module")
def real_cluster() -> Iterator[LocalCluster]:
    # SIGTERM (a CI timeout, a kill) would end pytest without teardown: make it an interrupt, so the node stops.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    built = images.build(list(IMAGES), "localhost", "testbed")
    built_at = time.monotonic()
    cluster = LocalCluster(real_node=True)
    try:
        cluster.start(timeout=180)
        assert cluster.node is not None
        cluster.node.load_images([f"localhost/{image.name}:testbed" for image in built])
        print(f"\nImages {built_at - started:.0f} s ({', '.join(f'{b.name} {b.size / 1e6:.0f} MB' for b in built)}); "
              f"real node and images loaded {time.monotonic() - built_at:.0f} s")
        yield cluster
    finally:
        if os.environ.get("KEEP_TESTBED"):
            cluster.stop()
            print(f"\nKept the real node's files in {cluster.workdir}")
        else:
            cluster.cleanup()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def diagnose(cluster: LocalCluster) -> str:
    """What a failure needs: objects, events and the containers' logs (kubectl logs cannot reach this node)."""
    out = []
    for args in (("get", "pods,jobs,sj", "-A", "-o", "wide"), ("get", "events", "-A", "--sort-by=.lastTimestamp")):
        try:
            out.append(cluster.kubectl(*args)[-6000:])
        except KubectlError as exc:
            out.append(str(exc))
    if cluster.node is not None:
        try:
            listing = cluster.node.crictl("ps", "-a", "-q").split()
            for container in listing[-12:]:
                done = subprocess.run(
                    [*cluster.node.crictl_argv(), "logs", "--tail", "40", container],
                    capture_output=True, text=True)
                out.append(f"--- container {container}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        except subprocess.CalledProcessError as exc:
            out.append(f"crictl: {exc.stderr}")
    return "\n".join(out)


def service_target_port(cluster: LocalCluster, namespace: str, service: str, deployment: str) -> int:
    """The Service's target port, resolved by name against its Deployment's container ports."""
    target = cluster.kubectl("get", "service", service, "-n", namespace,
                             "-o", "jsonpath={.spec.ports[0].targetPort}").strip()
    if target.isdigit():
        return int(target)
    port = cluster.kubectl("get", "deployment", deployment, "-n", namespace, "-o",
                           f"jsonpath={{.spec.template.spec.containers[0].ports[?(@.name=='{target}')].containerPort}}")
    return int(port.strip())


def test_manifests_default_runs_on_a_real_node(real_cluster: LocalCluster) -> None:
    cluster = real_cluster
    started = time.monotonic()
    cluster.kubectl("apply", "--server-side", "-k", str(ROOT / "manifests" / "testbed"))
    cluster.kubectl("create", "configmap", "syncjob-testbed-apiserver", "-n", scenario.SYSTEM,
                    "--from-literal=KUBERNETES_SERVICE_HOST=127.0.0.1",
                    f"--from-literal=KUBERNETES_SERVICE_PORT={cluster.api_port}")
    # SecantusDB has no users: every component's Secret holds the same URI (syncjob-mongo as shipped here; the
    # per-component names for manifests that give each component its own MongoDB user).
    for secret in ("syncjob-mongo", "syncjob-mongo-operator", "syncjob-mongo-api"):
        cluster.kubectl("create", "secret", "generic", secret, "-n", scenario.SYSTEM,
                        f"--from-literal=MONGO_URI={MONGO_URI}")
    api_port = service_target_port(cluster, scenario.SYSTEM, "syncjob-api", "syncjob-api")
    target = scenario.Target(
        kubectl=cluster.kubectl, api_url=f"http://127.0.0.1:{api_port}", mongo_uri=MONGO_URI, pod_mongo_uri=MONGO_URI,
        stuck_mongo_uri=f"mongodb://127.0.0.1:{free_port()}/tradingagents?serverSelectionTimeoutMS=2000",
    )
    try:
        timings = scenario.run(target)
    except BaseException:
        print(diagnose(cluster))
        raise
    print(f"\nReal-node scenario: {time.monotonic() - started:.0f} s; "
          + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()))
    # The images ran as shipped: non-root, read-only root filesystem (the Deployments say so and the pods ran).
    pods = cluster.kubectl("get", "pods", "-n", scenario.SYSTEM, "-o",
                           "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].ready}\n{end}")
    assert all(line.endswith("true") for line in pods.strip().splitlines()), pods
