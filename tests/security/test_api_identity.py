"""Only the API's ServiceAccount may write SyncJobs as the API's field manager (manifests/admission-policy).

The operator believes `requested-by` / `cancel-requested-by` only when managedFields say the API's manager
(`syncjob-api`) wrote them with their token (syncjob_operator.builders.requester), and leaves the audit entry of a
spec change made under that manager to the API. The shipped ValidatingAdmissionPolicy makes that manager's name
unclaimable: here it runs on the test bed's API server, and a user with every right on SyncJobs tries each way of
writing under the API's name that the API server accepts without it. After each write the operator's own reading of
the object says who it would credit.

The policy is the one `manifests/default` renders; its binding is narrowed to this test's namespace, because other
tests of the session act as the API with the admin's credentials (the shipped binding, unnarrowed, runs on the real
node in tests/deploy, where the API runs under its ServiceAccount).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from syncjob_operator import builders

from syncjob import names
from testbed.cluster import LocalCluster
from testbed.procs import wait_until
from tests.conftest import make_syncjob
from tests.manifests.conftest import MANIFESTS, build, by_kind, kubectl_bin

POLICY = "syncjob-api-identity"
API_NAMESPACE, API_ACCOUNT = "syncjob-system", "syncjob-api"


class Writer:
    """kubectl, and raw HTTP where kubectl cannot say it, as one identity (a token) against one namespace."""

    def __init__(self, cluster: LocalCluster, token: str, namespace: str) -> None:
        self.cluster, self.token, self.ns = cluster, token, namespace

    def kubectl(self, *args: str, input_: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kubectl_bin(), f"--kubeconfig={self.cluster.kubeconfig_for('nobody')}",
                               f"--token={self.token}", "-n", self.ns, *args],
                              capture_output=True, text=True, input=input_, timeout=60)

    def http(self, method: str, body: dict[str, Any], *, user_agent: str,
             content_type: str = "application/merge-patch+json") -> tuple[int, str]:
        url = (f"{self.cluster.server}/apis/{names.GROUP}/{names.VERSION}/namespaces/{self.ns}/"
               f"{names.PLURAL}/quotes")
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type, "User-Agent": user_agent})
        context = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["message"]


@pytest.fixture
def writers(cluster: LocalCluster, syncjob_crd: str, namespace: str) -> Iterator[tuple[Writer, Writer]]:
    """(the API's ServiceAccount, alice), both allowed everything on SyncJobs in `namespace`, with the policy on."""
    docs = build(MANIFESTS / "default")
    policy = by_kind(docs, "ValidatingAdmissionPolicy")[POLICY]
    binding = by_kind(docs, "ValidatingAdmissionPolicyBinding")[POLICY]
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    cluster.kubectl("apply", "-f", "-", input_=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": API_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": API_ACCOUNT, "namespace": API_NAMESPACE}},
    ]))
    cluster.kubectl("create", "role", "syncjobs", "-n", namespace, f"--resource={names.PLURAL}.{names.GROUP}",
                    "--verb=get,list,create,update,patch,delete")
    cluster.kubectl("create", "rolebinding", "syncjobs", "-n", namespace, "--role=syncjobs", "--user=alice",
                    f"--serviceaccount={API_NAMESPACE}:{API_ACCOUNT}")
    cluster.kubectl("apply", "-f", "-", input_=yaml.safe_dump_all([policy, binding]))
    try:
        status = wait_until(lambda: (s := json.loads(cluster.kubectl(
            "get", "validatingadmissionpolicy", POLICY, "-o", "json")).get("status") or {}).get(
            "observedGeneration") and s, 30, "the policy's type check")
        assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status  # every expression is typed
        token = cluster.kubectl("create", "token", API_ACCOUNT, "-n", API_NAMESPACE).strip()
        alice = Writer(cluster, cluster.identities["alice"].token, namespace)
        # The API server's admission plugin loads policies from an informer: wait until this one is in force.
        probe = yaml.safe_dump(make_syncjob("probe"))
        wait_until(lambda: alice.kubectl("create", "--dry-run=server", f"--field-manager={names.FIELD_MANAGER_API}",
                                         "-f", "-", input_=probe).returncode != 0, 30, "the policy in force")
        yield Writer(cluster, token, namespace), alice
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "validatingadmissionpolicybinding", POLICY)
        cluster.kubectl("delete", "--ignore-not-found", "validatingadmissionpolicy", POLICY)


def _credited(writer: Writer, token_key: str = names.REQUESTED_AT) -> tuple[str, bool]:
    """Whom the operator would credit with the current token: its reading of the live object's managedFields."""
    metadata = json.loads(writer.kubectl("get", names.PLURAL, "quotes", "-o", "json",
                                         "--show-managed-fields").stdout)["metadata"]
    return builders.requester(metadata.get("annotations") or {}, builders.annotation_owners(metadata), token_key)


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, f"accepted: {done.stdout}"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in done.stderr, done.stderr
    return done.stderr


def _annotate(writer: Writer, *pairs: str, manager: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = [f"--field-manager={manager}"] if manager else []
    return writer.kubectl("annotate", "--overwrite", *extra, names.PLURAL, "quotes", *pairs)


def test_nobody_but_the_api_can_be_credited_as_the_api(writers: tuple[Writer, Writer]) -> None:
    api, alice = writers
    syncjob = yaml.safe_dump(make_syncjob("quotes"))
    assert "reserved for the syncjob-api ServiceAccount" in _refused(
        alice.kubectl("create", f"--field-manager={names.FIELD_MANAGER_API}", "-f", "-", input_=syncjob))
    assert alice.kubectl("create", "-f", "-", input_=syncjob).returncode == 0

    # The API triggers for carol: believed.
    done = _annotate(api, f"{names.REQUESTED_AT}=t1", f"{names.REQUESTED_BY}=carol", manager=names.FIELD_MANAGER_API)
    assert done.returncode == 0, done.stderr
    assert _credited(api) == ("carol", True)

    # alice names the API's manager outright: refused, and carol's request stands as it was.
    _refused(_annotate(alice, f"{names.REQUESTED_AT}=t2", manager=names.FIELD_MANAGER_API))
    _refused(alice.kubectl("patch", f"--field-manager={names.FIELD_MANAGER_API}", names.PLURAL, "quotes",
                           "--type=merge", "-p", '{"spec": {"paused": true}}'))
    # ...or gives no field manager and a User-Agent from which the API server would derive it.
    code, message = alice.http("PATCH", {"metadata": {"annotations": {names.REQUESTED_AT: "t3"}}},
                               user_agent="syncjob-api/0.1.0")
    assert code == 403 and names.REQUESTED_AT in message, message
    code, message = alice.http("PATCH", {"spec": {"paused": True}}, user_agent="syncjob-api/0.1.0")
    assert code == 403 and POLICY in message, message
    assert _credited(api) == ("carol", True)

    # Her own kubectl trigger is hers: credited to her field manager, not to carol.
    assert _annotate(alice, f"{names.REQUESTED_AT}=t4").returncode == 0
    assert _credited(api) == ("field-manager:kubectl-annotate", False)
    # Rewriting managedFields to hand her token to the API's manager: refused.
    obj = json.loads(alice.kubectl("get", names.PLURAL, "quotes", "-o", "json", "--show-managed-fields").stdout)
    entries = {e["manager"]: e for e in obj["metadata"]["managedFields"]}
    field = f"f:{names.REQUESTED_AT}"
    theirs = entries["kubectl-annotate"]["fieldsV1"]["f:metadata"]["f:annotations"]
    entries[names.FIELD_MANAGER_API]["fieldsV1"]["f:metadata"]["f:annotations"][field] = theirs.pop(field)
    code, message = alice.http("PUT", obj, user_agent="kubectl/v1.34.4", content_type="application/json")
    assert code == 403 and names.REQUESTED_AT in message, message
    assert _credited(api) == ("field-manager:kubectl-annotate", False)

    # What she may do stays possible: a cancel, a spec edit, a server-side apply taking a field from the API.
    assert _annotate(alice, f"{names.CANCEL_AT}=c1").returncode == 0
    assert _credited(api, names.CANCEL_AT) == ("field-manager:kubectl-annotate", False)
    done = api.kubectl("patch", f"--field-manager={names.FIELD_MANAGER_API}", names.PLURAL, "quotes",
                       "--type=merge", "-p", '{"spec": {"paused": true}}')
    assert done.returncode == 0, done.stderr
    applied = make_syncjob("quotes", paused=False)
    done = alice.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=flux", "-f", "-",
                         input_=yaml.safe_dump(applied))
    assert done.returncode == 0, done.stderr
    assert alice.kubectl("get", names.PLURAL, "quotes", "-o", "jsonpath={.spec.paused}").stdout == "false"
    # And the API's next request is believed again.
    done = _annotate(api, f"{names.REQUESTED_AT}=t5", f"{names.REQUESTED_BY}=dave", manager=names.FIELD_MANAGER_API)
    assert done.returncode == 0, done.stderr
    assert _credited(api) == ("dave", True)
