"""The validating admission webhook, called by the real API server: a bad cron expression or time zone is refused
at `kubectl apply` time, with a message naming the field; a good SyncJob passes; an already-invalid SyncJob can
still be annotated, and only a change of its bad field is judged.

The ValidatingWebhookConfiguration is the one manifests/webhook ships, pointed at the operator on 127.0.0.1 with a
self-signed certificate, and limited to the test's namespace.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from syncjob import names
from testbed.cluster import KubectlError, LocalCluster
from testbed.procs import free_port
from tests.conftest import CRD_FILE, make_syncjob
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually

WEBHOOK_CONFIG = CRD_FILE.parents[1] / "manifests" / "webhook" / "validatingwebhookconfiguration.yaml"


@pytest.fixture
def webhook_port() -> int:
    return free_port()


@pytest.fixture
def webhook_cert(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def operator_env(webhook_port: int, webhook_cert: tuple[Path, Path]) -> dict[str, str]:
    return {"WEBHOOK_PORT": str(webhook_port), "WEBHOOK_ADDR": "127.0.0.1",
            "WEBHOOK_CERT_FILE": str(webhook_cert[0]), "WEBHOOK_KEY_FILE": str(webhook_cert[1])}


@pytest.fixture
def register_webhook(k8s: client.ApiClient, namespace: str, webhook_port: int,
                     webhook_cert: tuple[Path, Path]) -> Iterator[Any]:
    """Returns a function that registers the shipped webhook configuration for this test's namespace."""
    admission = client.AdmissionregistrationV1Api(k8s)
    config: dict[str, Any] = yaml.safe_load(WEBHOOK_CONFIG.read_text())
    config["metadata"]["name"] = f"syncjob-operator-{namespace}"
    del config["metadata"]["annotations"]  # cert-manager's CA injection; the test gives the caBundle itself
    hook = config["webhooks"][0]
    path = hook["clientConfig"]["service"]["path"]
    hook["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}{path}",
                            "caBundle": base64.b64encode(webhook_cert[0].read_bytes()).decode()}
    hook["failurePolicy"] = "Fail"  # so that a request the webhook never saw cannot pass for one it accepted
    hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    registered = False

    def register() -> None:
        nonlocal registered
        admission.create_validating_webhook_configuration(config)
        registered = True

    yield register
    if registered:
        admission.delete_validating_webhook_configuration(config["metadata"]["name"])


def _apply(cluster: LocalCluster, namespace: str, manifest: dict[str, Any]) -> str:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input_=yaml.safe_dump(manifest))


def test_bad_cron_and_time_zone_are_refused_at_apply_time(
        cluster: LocalCluster, namespace: str, operator: OperatorProcess, syncjobs: SyncJobs,
        register_webhook: Any) -> None:
    # Made before the webhook exists: it gets in, and the operator reports it (Ready=False, InvalidSpec).
    syncjobs.create(make_syncjob("legacy", schedule="61 * * * *"))
    register_webhook()

    def refused() -> str | None:
        try:
            _apply(cluster, namespace, make_syncjob("bad-cron", schedule="0 25 * * *"))
        except KubectlError as exc:
            return str(exc)
        syncjobs.delete("bad-cron")  # the API server had not picked the webhook up yet
        return None

    message = eventually(refused, 30, "the webhook to refuse a bad cron expression")
    assert 'admission webhook "validate-syncjob.sync.tradingagents.io" denied the request' in message
    assert "spec.schedule: '0 25 * * *' is not a valid cron expression" in message

    with pytest.raises(KubectlError, match=r"spec.timeZone: 'Asia/Shanghia' is not an IANA time zone"):
        _apply(cluster, namespace, make_syncjob("bad-zone", timeZone="Asia/Shanghia"))
    assert "created" in _apply(cluster, namespace, make_syncjob("good", schedule="30 16 * * 1-5"))
    listed = syncjobs.api.list_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL)
    assert {s["metadata"]["name"] for s in listed["items"]} == {"legacy", "good"}

    # The existing invalid SyncJob: a change that leaves its bad field alone passes; a new bad value does not;
    # the fix passes, and the operator then makes it Ready.
    syncjobs.annotate("legacy", {"example.com/owner": "data-team"})
    with pytest.raises(client.ApiException) as refused_patch:
        syncjobs.patch_spec("legacy", {"schedule": "* * * *"})
    assert refused_patch.value.status == 422 and "spec.schedule" in str(refused_patch.value.body)
    syncjobs.patch_spec("legacy", {"schedule": "*/10 9-15 * * 1-5"})
    assert eventually(lambda: (syncjobs.ready("legacy") or {}).get("status") == "True", 30,
                      "the fixed SyncJob to become Ready")
