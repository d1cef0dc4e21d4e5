"""The manifests against a real API server: server-side dry-run of everything, and RBAC that is enough and no more.

RBAC is checked with `kubectl auth can-i --as=system:serviceaccount:...` (impersonation by the admin), verb by verb:
each component may do what it does, and is denied what it has no business doing. That the rules are enough for
the real processes is shown by the demo, which runs the operator and the API under these ServiceAccounts' tokens.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from testbed.cluster import LocalCluster
from tests.manifests.conftest import MANIFESTS, build, by_kind, kubectl_bin

SYSTEM = "syncjob-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SYNCJOBS = "syncjobs.sync.tradingagents.io"
Rule = tuple[str, str, str | None, str | None]  # verb, resource[/name], namespace (None: cluster), subresource


def _kubectl(cluster: LocalCluster, *args: str, input_: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl_bin(), f"--kubeconfig={cluster.kubeconfig}", *args], capture_output=True,
                          text=True, input=input_, timeout=60)


def _dry_run(cluster: LocalCluster, docs: list[dict[str, Any]], namespace: str | None = None) -> str:
    # --force-conflicts: the CRD is already applied by the session's fixture under kubectl's field manager; the
    # second-manager case has its own test below.
    args = ["apply", "--server-side", "--field-manager=syncjob-tests", "--force-conflicts", "--dry-run=server",
            "-f", "-"]
    args += ["-n", namespace] if namespace else []
    done = _kubectl(cluster, *args, input_=yaml.safe_dump_all(docs))
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # e.g. `would violate PodSecurity "restricted:latest"`
    assert done.stdout.count("(server dry run)") == len(docs), done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, syncjob_crd: str) -> Iterator[LocalCluster]:
    """manifests/default's Namespace and RBAC, really applied (everything else is only dry-run)."""
    docs = build(MANIFESTS / "default")
    applied = [by_kind(docs, "Namespace")[SYSTEM], *(d for d in docs if d["kind"] in RBAC_KINDS)]
    done = _kubectl(cluster, "apply", "-f", "-", input_=yaml.safe_dump_all(applied))
    assert done.returncode == 0, done.stderr
    yield cluster
    cluster_scoped = [d for d in applied if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    _kubectl(cluster, "delete", "--ignore-not-found", "-f", "-", input_=yaml.safe_dump_all(cluster_scoped))


def test_default_passes_server_side_dry_run_with_no_pod_security_warning(installed: LocalCluster) -> None:
    docs = build(MANIFESTS / "default")
    out = _dry_run(installed, docs)
    assert "deployment.apps/syncjob-operator" in out and "statefulset.apps/syncjob-mongodb" in out


def test_webhook_overlay_passes_server_side_dry_run(installed: LocalCluster) -> None:
    out = _dry_run(installed, build(MANIFESTS / "webhook"))
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/syncjob-operator" in out
    assert "service/syncjob-operator-webhook" in out


def test_crd_applies_under_a_second_field_manager_without_conflict(installed: LocalCluster) -> None:
    """Argo CD and Flux apply with their own field manager over a CRD someone installed with kubectl."""
    crd = build(MANIFESTS / "crd")
    done = _kubectl(installed, "apply", "--server-side", "--field-manager=argocd-controller", "--dry-run=server",
                    "-f", "-", input_=yaml.safe_dump_all(crd))
    assert done.returncode == 0, done.stderr


def test_namespace_manifests_and_samples_pass_server_side_dry_run(installed: LocalCluster, namespace: str) -> None:
    for path in (MANIFESTS / "sync-namespace", MANIFESTS / "samples", MANIFESTS / "samples" / "demo"):
        _dry_run(installed, build(path), namespace)


def _can_i(cluster: LocalCluster, account: str, verb: str, resource: str, namespace: str | None,
           subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={account}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    done = _kubectl(cluster, *args)
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), done.stderr
    return answer == "yes"


def _check(cluster: LocalCluster, account: str, rules: list[Rule], expected: bool) -> None:
    # A binding just applied takes effect once the API server's RBAC informer has it: a grant is waited for.
    deadline = time.monotonic() + (30 if expected else 0)
    while (wrong := [r for r in rules if _can_i(cluster, account, *r) is not expected]) and expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not wrong, f"{account} {'cannot' if expected else 'can'}: {wrong}"


OPERATOR = f"system:serviceaccount:{SYSTEM}:syncjob-operator"
API = f"system:serviceaccount:{SYSTEM}:syncjob-api"
NS = "{ns}"  # replaced by a fresh namespace: cluster-wide rules must hold in any namespace


def _in(rules: list[Rule], ns: str) -> list[Rule]:
    return [(v, r, ns if n == NS else n, s) for v, r, n, s in rules]


OPERATOR_DOES: list[Rule] = [
    *((verb, SYNCJOBS, NS, None) for verb in ("get", "list", "watch", "patch")),
    *((verb, SYNCJOBS, NS, "status") for verb in ("get", "patch", "update")),
    *((verb, "cronjobs.batch", NS, None) for verb in ("get", "list", "watch", "create", "update", "patch", "delete")),
    *((verb, "jobs.batch", NS, None) for verb in ("get", "list", "watch", "create", "delete")),
    *((verb, "pods", NS, None) for verb in ("get", "list", "watch")),
    *((verb, "events", NS, None) for verb in ("create", "patch")),
    *((verb, "events.events.k8s.io", NS, None) for verb in ("create", "patch")),
    *((verb, "customresourcedefinitions.apiextensions.k8s.io", None, None) for verb in ("get", "list", "watch")),
    *((verb, "namespaces", None, None) for verb in ("list", "watch")),
    ("create", "leases.coordination.k8s.io", SYSTEM, None),
    *((verb, "leases.coordination.k8s.io/syncjob-operator", SYSTEM, None) for verb in ("get", "update", "patch")),
]
OPERATOR_MUST_NOT: list[Rule] = [
    ("get", "secrets", NS, None),
    ("list", "secrets", SYSTEM, None),
    ("create", "pods", NS, None),
    ("create", "pods", NS, "exec"),
    ("create", SYNCJOBS, NS, None),
    ("update", SYNCJOBS, NS, None),
    ("delete", SYNCJOBS, NS, None),
    ("patch", "jobs.batch", NS, None),
    ("get", "leases.coordination.k8s.io/syncjob-operator", NS, None),
    ("update", "leases.coordination.k8s.io/kube-controller-manager", SYSTEM, None),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None, None),
    ("create", "rolebindings.rbac.authorization.k8s.io", NS, None),
]
API_DOES: list[Rule] = [
    *((verb, SYNCJOBS, NS, None) for verb in ("get", "list", "watch", "patch")),
    *((verb, "jobs.batch", NS, None) for verb in ("get", "list", "delete")),  # delete: a run marked failed
    *((verb, "pods", NS, None) for verb in ("get", "list")),
    ("create", "tokenreviews.authentication.k8s.io", None, None),
    ("create", "subjectaccessreviews.authorization.k8s.io", None, None),
    ("get", "leases.coordination.k8s.io/syncjob-operator", SYSTEM, None),
]
API_MUST_NOT: list[Rule] = [
    ("create", "jobs.batch", NS, None),
    ("patch", "jobs.batch", NS, None),
    ("patch", "cronjobs.batch", NS, None),
    ("delete", SYNCJOBS, NS, None),
    ("patch", SYNCJOBS, NS, "status"),
    ("get", "secrets", NS, None),
    ("delete", "pods", NS, None),
    ("update", "leases.coordination.k8s.io/syncjob-operator", SYSTEM, None),
    ("list", "leases.coordination.k8s.io", SYSTEM, None),
]


def test_operator_may_do_what_it_does(installed: LocalCluster, namespace: str) -> None:
    _check(installed, OPERATOR, _in(OPERATOR_DOES, namespace), expected=True)


def test_operator_cannot_read_secrets_or_exceed_its_job(installed: LocalCluster, namespace: str) -> None:
    _check(installed, OPERATOR, _in(OPERATOR_MUST_NOT, namespace), expected=False)


def test_api_may_do_what_it_does(installed: LocalCluster, namespace: str) -> None:
    _check(installed, API, _in(API_DOES, namespace), expected=True)


def test_api_cannot_create_jobs_delete_pods_or_read_secrets(installed: LocalCluster, namespace: str) -> None:
    _check(installed, API, _in(API_MUST_NOT, namespace), expected=False)


def test_sync_pods_service_account_can_do_nothing(installed: LocalCluster, namespace: str) -> None:
    docs = build(MANIFESTS / "sync-namespace")
    done = _kubectl(installed, "apply", "-n", namespace, "-f", "-", input_=yaml.safe_dump_all(docs))
    assert done.returncode == 0, done.stderr
    account = f"system:serviceaccount:{namespace}:syncjob-sync"
    _check(installed, account, [("get", "pods", namespace, None), ("list", "secrets", namespace, None),
                                ("get", SYNCJOBS, namespace, None), ("create", "jobs.batch", namespace, None),
                                ("get", "configmaps", namespace, None)], expected=False)
    listing = _kubectl(installed, "auth", "can-i", "--list", f"--as={account}", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    resources = {line.split()[0] for line in listing.stdout.splitlines()[1:] if line[:1].strip()}
    # What every authenticated identity may do (discovery, "who am I", "what may I do"), and nothing else.
    assert resources <= {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                         "selfsubjectrulesreviews.authorization.k8s.io"}, listing.stdout


def test_user_roles_make_api_viewers_and_admins(installed: LocalCluster, namespace: str) -> None:
    """Bound in one namespace, syncjob-viewer may read SyncJobs there and syncjob-admin may also patch them."""
    for user, role in (("vera", "syncjob-viewer"), ("adam", "syncjob-admin")):
        done = _kubectl(installed, "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}",
                        f"--user={user}", "-n", namespace)
        assert done.returncode == 0, done.stderr
    _check(installed, "vera", [("get", SYNCJOBS, namespace, None), ("list", SYNCJOBS, namespace, None)], True)
    _check(installed, "vera", [("patch", SYNCJOBS, namespace, None), ("get", SYNCJOBS, SYSTEM, None)], False)
    _check(installed, "adam", [("get", SYNCJOBS, namespace, None), ("patch", SYNCJOBS, namespace, None)], True)
    _check(installed, "adam", [("patch", SYNCJOBS, namespace, "status"), ("get", "secrets", namespace, None),
                               ("patch", SYNCJOBS, SYSTEM, None)], False)
