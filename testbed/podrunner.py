"""The test bed's kubelet stand-in: run pods bound to the fake node as local processes.

kwok keeps the fake node alive but never executes a container. This runner watches the pods bound to that node,
starts the first container's command and args as a local process with the pod's environment (plain values, $(VAR)
expansion, Secret and ConfigMap keys, envFrom, downward-API fields), reports Running, and on exit sets the pod
Succeeded or Failed from the exit code, as a kubelet would. A pod marked for deletion gets SIGTERM, then SIGKILL
after its grace period, and is then removed. The image is ignored: the command must exist on this machine.

Run: python -m testbed.podrunner --kubeconfig K --node NAME --node-ip 127.0.0.x --workdir DIR
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from testbed.procs import die_with_parent

log = logging.getLogger("podrunner")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown references stay as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, value)


def _host_env() -> dict[str, str]:
    """The runner's environment with its own Python's bin folder first, so console scripts such as
    `syncjob-sync` resolve to this checkout's virtualenv the way they resolve to the image's in a real pod."""
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_path(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path not in simple:
        raise ValueError(f"unsupported fieldRef {path}")
    return str(simple[path] or "")


class PodRunner:
    def __init__(self, api: client.CoreV1Api, node: str, node_ip: str, workdir: Path) -> None:
        self.api, self.node, self.node_ip, self.workdir = api, node, node_ip, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # pod uid -> process
        self.killing: set[str] = set()
        self.started: set[str] = set()  # a pod runs once, whatever stale events say later
        self.lock = threading.Lock()

    # -- environment ------------------------------------------------------------------------------------------

    def _secret(self, ns: str, name: str) -> dict[str, str]:
        data = self.api.read_namespaced_secret(name, ns).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _configmap(self, ns: str, name: str) -> dict[str, str]:
        return dict(self.api.read_namespaced_config_map(name, ns).data or {})

    def _lookup(self, kind: str, ns: str, ref: dict[str, Any]) -> dict[str, str] | None:
        try:
            return self._secret(ns, ref["name"]) if kind == "secret" else self._configmap(ns, ref["name"])
        except ApiException as exc:
            if exc.status == 404 and ref.get("optional"):
                return None
            raise RuntimeError(f"{kind} {ns}/{ref['name']} not found") from exc

    def container_env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            for kind in ("secret", "configMap"):
                ref = src.get(f"{kind}Ref")
                if ref:
                    values = self._lookup("secret" if kind == "secret" else "configmap", ns, ref) or {}
                    env.update({src.get("prefix", "") + k: v for k, v in values.items()})
        for var in container.get("env") or []:
            name, source = var["name"], var.get("valueFrom")
            if source is None:
                env[name] = expand(var.get("value", ""), env)
            elif "fieldRef" in source:
                env[name] = _field_path(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secret" if "secretKeyRef" in source else "configmap"
                ref = source.get("secretKeyRef") or source["configMapKeyRef"]
                values = self._lookup(kind, ns, ref)
                if values is None or ref["key"] not in values:
                    if ref.get("optional"):
                        continue
                    raise RuntimeError(f"key {ref['key']} not found in {kind} {ns}/{ref['name']}")
                env[name] = values[ref["key"]]
            elif "resourceFieldRef" in source:
                resources = container.get("resources") or {}
                kind, _, res = source["resourceFieldRef"]["resource"].partition(".")
                env[name] = str((resources.get(kind) or {}).get(res, "0"))
        return env

    # -- status -----------------------------------------------------------------------------------------------

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _running(self, pod: dict[str, Any], container: dict[str, Any], pid: int, started: str) -> dict[str, Any]:
        return {
            "phase": "Running", "hostIP": self.node_ip, "podIP": self.node_ip, "podIPs": [{"ip": self.node_ip}],
            "startTime": started,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": started}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [{
                "name": container["name"], "image": container.get("image", ""), "imageID": "",
                "containerID": f"local://{pid}", "ready": True, "started": True, "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }],
        }

    def _terminated(self, running: dict[str, Any], code: int, reason: str, message: str = "") -> dict[str, Any]:
        finished = _now()
        cs = running["containerStatuses"][0]
        terminated = {"exitCode": code, "reason": reason, "startedAt": cs["state"]["running"]["startedAt"],
                      "finishedAt": finished, "containerID": cs["containerID"]}
        if message:
            terminated["message"] = message
        return {
            **running,
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [
                {"type": t, "status": "False" if t in ("Ready", "ContainersReady") else "True",
                 "reason": "PodCompleted", "lastTransitionTime": finished}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [{**cs, "ready": False, "started": False, "state": {"terminated": terminated}}],
        }

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid, key = meta["uid"], f"{meta['namespace']}/{meta['name']}"
        with self.lock:
            if uid in self.started:
                return
            self.started.add(uid)
        container = pod["spec"]["containers"][0]
        started = _now()
        pod_dir = self.workdir / f"{meta['namespace']}_{meta['name']}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        try:
            env = self.container_env(pod, container)
            argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
            if not argv:
                raise RuntimeError("the pod runner needs an explicit command: images are not run here")
            workdir = container.get("workingDir")
            cwd = workdir if workdir and os.path.isdir(workdir) else str(pod_dir)
            with (pod_dir / f"{container['name']}.log").open("ab") as out:
                proc = subprocess.Popen(argv, env={**_host_env(), **env}, cwd=cwd, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=die_with_parent)
        except Exception as exc:  # a bad pod fails like a container that could not start
            log.warning("Failed to start pod %s: %s", key, exc)
            running = self._running(pod, container, 0, started)
            self._patch_status(pod, self._terminated(running, 128, "StartError", str(exc)))
            return
        with self.lock:
            self.procs[uid] = proc
        running = self._running(pod, container, proc.pid, started)
        self._patch_status(pod, running)
        log.info("Started pod %s as pid %d: %s", key, proc.pid, " ".join(argv))
        threading.Thread(target=self._await_exit, args=(pod, proc, running), daemon=True).start()

    def _await_exit(self, pod: dict[str, Any], proc: subprocess.Popen[bytes], running: dict[str, Any]) -> None:
        code = proc.wait()
        meta = pod["metadata"]
        with self.lock:
            self.procs.pop(meta["uid"], None)
            killed = meta["uid"] in self.killing
        if code < 0:  # killed by a signal: report it the way a container runtime does
            code = 128 - code
        reason = "Completed" if code == 0 else ("OOMKilled" if code == 137 and not killed else "Error")
        self._patch_status(pod, self._terminated(running, code, reason))
        log.info("Pod %s/%s exited with code %d", meta["namespace"], meta["name"], code)

    def kill_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            proc = self.procs.get(uid)
            if uid in self.killing:
                return
            self.killing.add(uid)
        grace = pod["metadata"].get("deletionGracePeriodSeconds") or 30
        threading.Thread(target=self._kill_and_remove, args=(pod, proc, grace), daemon=True).start()

    def _kill_and_remove(self, pod: dict[str, Any], proc: subprocess.Popen[bytes] | None, grace: int) -> None:
        meta = pod["metadata"]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            time.sleep(0.5)  # let the exit status be reported before the pod goes
        try:
            options = client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": meta["uid"]})
            self.api.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        log.info("Deleted pod %s/%s", meta["namespace"], meta["name"])

    def handle(self, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            self.kill_pod(pod)
        elif status.get("phase", "Pending") == "Pending":
            self.start_pod(pod)

    def run(self) -> None:
        selector = f"spec.nodeName={self.node}"
        while True:
            try:
                pods = self.api.list_pod_for_all_namespaces(field_selector=selector)
                for item in pods.items:
                    self.handle(self.api.api_client.sanitize_for_serialization(item))
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=pods.metadata.resource_version, timeout_seconds=60,
                    _request_timeout=90,
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.handle(self.api.api_client.sanitize_for_serialization(event["object"]))
            except Exception as exc:  # keep running through API hiccups, like a kubelet
                log.warning("Watch of pods on %s failed, relisting: %s", self.node, exc)
                time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    PodRunner(client.CoreV1Api(), args.node, args.node_ip, args.workdir).run()


if __name__ == "__main__":
    main()
