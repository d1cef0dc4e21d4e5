"""manifests/testbed keeps the network rule of the test bed: every pod on the host network, on loopback only.

The real-node test may send traffic to loopback addresses only. A pod without hostNetwork would get an address
from the node's range, a probe without a host would be sent to the node's address, an image that may be pulled
would reach for a registry: each is checked here, without a cluster, so a change to manifests/default that the
overlay does not cover fails fast rather than on the real node.
"""

from __future__ import annotations

import json
from typing import Any

from tests.manifests.conftest import MANIFESTS, build, by_kind

OVERLAY = MANIFESTS / "testbed"


def _pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: d["spec"]["template"]["spec"] for name, d in by_kind(docs, "Deployment").items()}


def test_every_pod_runs_on_the_host_network_with_local_images_and_loopback_probes() -> None:
    docs = build(OVERLAY)
    assert not by_kind(docs, "StatefulSet"), "the mongo:7 StatefulSet needs a registry and a volume provisioner"
    pods = _pods(docs)
    assert set(pods) == {"syncjob-operator", "syncjob-api", "syncjob-secantusdb"}
    for name, pod in pods.items():
        assert pod.get("hostNetwork") is True, name
        for container in pod["containers"]:
            assert container["image"].startswith("localhost/") and container["image"].endswith(":testbed"), name
            assert container["imagePullPolicy"] == "Never", name
            for probe in ("livenessProbe", "readinessProbe"):
                if probe in container:
                    action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                    assert action["host"] == "127.0.0.1", f"{name} {probe}"


def test_sync_pods_are_rendered_on_the_host_network_from_the_local_image() -> None:
    env = {e["name"]: e.get("value") for e in _pods(build(OVERLAY))["syncjob-operator"]["containers"][0]["env"]}
    assert json.loads(env["SYNC_POD_TEMPLATE"]) == {"hostNetwork": True}
    assert env["SYNC_IMAGE"] == "localhost/syncjob-sync:testbed"
    assert env["SYNC_IMAGE_PULL_POLICY"] == "Never"
    assert env["LIVENESS_ENDPOINT"].startswith("http://127.0.0.1:")


def test_services_listen_on_loopback_ports_matching_their_containers() -> None:
    pods = _pods(build(OVERLAY))
    api = {e["name"]: e.get("value") for e in pods["syncjob-api"]["containers"][0]["env"]}
    assert api["API_HOST"] == "127.0.0.1"
    assert int(api["API_PORT"]) == pods["syncjob-api"]["containers"][0]["ports"][0]["containerPort"]
    secantus = pods["syncjob-secantusdb"]["containers"][0]
    assert secantus["args"][:2] == ["--host", "127.0.0.1"]
