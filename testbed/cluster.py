"""A real Kubernetes control plane on 127.0.0.1, without Docker: the local cluster of tests and the demo.

Starts etcd, kube-apiserver (TLS, RBAC, token authentication with an admin and test identities),
kube-controller-manager (the controllers CronJobs and Jobs need), kube-scheduler, and one node: by default kwok
managing a fake node whose address is on 127.0.0.0/8 and the pod runner that executes pods bound to it as local
processes (fast); with `real_node=True` a kubelet with containerd and runc (`testbed.node`), where pods run in real
containers on the host's network, for the tests of the product as deployed (tests/deploy).
Everything listens on free 127.0.0.1 ports and lives in one temporary folder; `stop()` ends every process by PID
(and the real node undoes its mounts and machine-wide sysctls).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed import binaries
from testbed.node import NODE_NAME as REAL_NODE_NAME
from testbed.node import RealNode
from testbed.procs import Process, free_port, wait_until

NODE_NAME = "kwok-node-0"
NODE_IP = "127.0.0.2"
CONTROLLERS = ",".join([
    "cronjob-controller", "job-controller", "garbage-collector-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "namespace-controller", "ttl-after-finished-controller",
    # Type-checks ValidatingAdmissionPolicies into their status (tests/security/test_api_identity.py reads it).
    "validatingadmissionpolicy-status-controller",
])
# With a real node, manifests/default's Deployments need their controllers, and pods of a real kubelet mount the
# kube-root-ca.crt ConfigMap, which root-ca-certificate-publisher publishes in every namespace.
REAL_NODE_CONTROLLERS = ",".join([
    CONTROLLERS, "deployment-controller", "replicaset-controller", "root-ca-certificate-publisher-controller",
])
# kwok keeps the node alive (status, heartbeat, lease). Pods are run by our pod runner, not by kwok's stages: this
# one pod stage matches nothing, which stops kwok from installing its default pod stages.
KWOK_STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pods-are-run-by-the-testbed-pod-runner}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchLabels: {testbed.syncjob.io/kwok-managed: "never"}
  next: {}
"""


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


@dataclass
class Identity:
    user: str
    token: str
    groups: tuple[str, ...] = ()


@dataclass
class LocalCluster:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncjob-cluster-")))
    run_pods: bool = True
    real_node: bool = False
    node: RealNode | None = None
    identities: dict[str, Identity] = field(default_factory=lambda: {
        "admin": Identity("testbed-admin", "admin-" + os.urandom(12).hex(), ("system:masters",)),
        # Test users with no rights of their own; tests bind them to the roles they exercise.
        "alice": Identity("alice", "alice-" + os.urandom(12).hex()),
        "bob": Identity("bob", "bob-" + os.urandom(12).hex()),
        "nobody": Identity("nobody", "nobody-" + os.urandom(12).hex()),
    })
    processes: list[Process] = field(default_factory=list)
    api_port: int = 0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "apiserver.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.kubeconfig_for("admin")

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def kubeconfig_for(self, identity: str) -> Path:
        path = self.workdir / f"{identity}.kubeconfig"
        if not path.exists():
            ident = self.identities[identity]
            path.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "local",
                "clusters": [{"name": "local", "cluster": {
                    "server": self.server, "certificate-authority": str(self.ca_file)}}],
                "users": [{"name": ident.user, "user": {"token": ident.token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": ident.user}}],
            }))
        return path

    def add_identity(self, name: str, user: str, groups: tuple[str, ...] = ()) -> None:
        """Must be called before start(): the token file is read at start-up."""
        self.identities[name] = Identity(user, f"{name}-" + os.urandom(12).hex(), groups)

    # -- start-up ---------------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(name, argv, self.logs, env=env).start()
        self.processes.append(proc)
        return proc

    def _write_files(self) -> None:
        (self.workdir / "pki").mkdir(parents=True, exist_ok=True)
        key = self.workdir / "pki" / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.workdir / "pki" / "sa.pub")],
                       check=True, capture_output=True)
        lines = [
            f'{i.token},{i.user},uid-{i.user},"{",".join(i.groups)}"' for i in self.identities.values()
        ]
        (self.workdir / "tokens.csv").write_text("\n".join(lines) + "\n")
        (self.workdir / "kwok-stages.yaml").write_text(KWOK_STAGES)

    def _readyz(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(f"{self.server}/readyz",
                                     headers={"Authorization": f"Bearer {self.identities['admin'].token}"})
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return resp.status == 200 and resp.read() == b"ok"

    def start(self, timeout: float = 90) -> LocalCluster:
        started = time.monotonic()
        bins = binaries.ensure_all()
        self._write_files()
        pki = self.workdir / "pki"
        etcd_port, etcd_peer = free_port(), free_port()
        self.api_port = free_port()
        try:
            etcd = self._spawn("etcd", [
                str(bins["etcd"]), "--name", "testbed", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster", f"testbed=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true", "--log-level", "warn",
            ])
            apiserver = self._spawn("kube-apiserver", [
                str(bins["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--cert-dir={pki}", f"--secure-port={self.api_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--endpoint-reconciler-type=none", "--allow-privileged=true",
                "--enable-priority-and-fairness=false", "--v=0",
                # No node-lifecycle controller runs to lift the not-ready taint this plugin puts on new nodes.
                "--disable-admission-plugins=TaintNodesByCondition",
            ])
            wait_until(lambda: self.ca_file.exists() and self._readyz(), timeout, "kube-apiserver /readyz",
                       process=apiserver)
            if not etcd.alive():
                raise RuntimeError(f"etcd exited:\n{etcd.log_tail()}")
            admin_kc = str(self.kubeconfig)
            self._spawn("kube-controller-manager", [
                str(bins["kube-controller-manager"]), f"--kubeconfig={admin_kc}",
                f"--authentication-kubeconfig={admin_kc}", f"--authorization-kubeconfig={admin_kc}",
                "--leader-elect=false", f"--controllers={REAL_NODE_CONTROLLERS if self.real_node else CONTROLLERS}",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={self.ca_file}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
                f"--cert-dir={pki / 'kcm'}", "--concurrent-job-syncs=10", "--v=0",
            ])
            self._spawn("kube-scheduler", [
                str(bins["kube-scheduler"]), f"--kubeconfig={admin_kc}",
                f"--authentication-kubeconfig={admin_kc}", f"--authorization-kubeconfig={admin_kc}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
                f"--cert-dir={pki / 'scheduler'}", "--v=0",
            ])
            if self.real_node:
                # Assigned before it starts, so that stop() undoes a start that failed half-way.
                self.node = RealNode(self.workdir / "node", self.kubeconfig, self.logs)
                self.node.start()
                wait_until(self._node_ready, timeout + 60, f"node {self.node_name} Ready")
                wait_until(self._default_service_account, 30, "the default ServiceAccount")
                self.startup_seconds = time.monotonic() - started
                return self
            self._spawn("kwok", [
                str(bins["kwok"]), f"--kubeconfig={admin_kc}", f"--config={self.workdir / 'kwok-stages.yaml'}",
                f"--manage-single-node={NODE_NAME}", f"--node-ip={NODE_IP}",
                f"--server-address=127.0.0.1:{free_port()}",
            ])
            self._create_node()
            if self.run_pods:
                self._spawn("pod-runner", [
                    sys.executable, "-m", "testbed.podrunner", "--kubeconfig", admin_kc, "--node", NODE_NAME,
                    "--node-ip", NODE_IP, "--workdir", str(self.workdir / "pods"),
                ], env={**os.environ, "PYTHONUNBUFFERED": "1"})
            wait_until(self._node_ready, timeout - (time.monotonic() - started), f"node {NODE_NAME} Ready")
            wait_until(self._default_service_account, 30, "the default ServiceAccount")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _kubectl(self, *args: str, input_: str | None = None) -> str:
        done = subprocess.run(
            [str(binaries.ensure("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, input=input_,
        )
        if done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def kubectl(self, *args: str, input_: str | None = None) -> str:
        """Run kubectl as the admin (for tests and the demo)."""
        return self._kubectl(*args, input_=input_)

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "type": "kwok", "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {},
        }
        wait_until(lambda: self._kubectl("apply", "-f", "-", input_=yaml.safe_dump(node)), 30, "node creation")

    @property
    def node_name(self) -> str:
        return REAL_NODE_NAME if self.real_node else NODE_NAME

    def _node_ready(self) -> bool:
        if self.node is not None and not self.node.alive():
            raise RuntimeError("the real node's containerd or kubelet exited; see their logs in " + str(self.logs))
        out = self._kubectl("get", "node", self.node_name, "-o",
                            "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        return out.strip() == "True"

    def _default_service_account(self) -> bool:
        return bool(self._kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name").strip())

    def stop(self) -> None:
        if self.node is not None:  # first: its pods talk to the API server while they stop
            self.node.stop()
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}
