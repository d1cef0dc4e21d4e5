"""`make demo`: the whole system on this machine, with no Docker and no network.

Starts the local control plane (testbed.cluster) and SecantusDB, installs the CRD, the RBAC of manifests/rbac and
the samples into namespace `market-data`, runs the operator and the API as local processes under their own
ServiceAccounts' tokens (so the demo also proves that manifests/rbac is enough), triggers one run of
`demo-file-daily` with `kubectl annotate`, waits for it, and prints its execution record as the API serves it and
the number of daily bars it landed. The run's pod executes `syncjob-sync run` for real through the test bed's pod
runner. It writes `.demo/env` for a second shell (`source .demo/env`, then kubectl and curl) and stays up until
Ctrl-C or SIGTERM, then stops everything it started.

    python -m testbed.demo                 # everything, until Ctrl-C
    python -m testbed.demo --cluster-only  # only the control plane (KUBECONFIG in .demo/env)
    python -m testbed.demo --smoke         # everything, then exit 0 once the run's record is printed

The 16 incumbent SyncJobs of manifests/samples are applied paused: their sources are the real data sites, which a
demo must not call. Trigger one by hand only on a machine that may reach them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from pymongo import MongoClient

from syncjob import mongo, names
from syncjob.model import SyncJob
from syncjob.runs import manual_run_id
from testbed import binaries
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from testbed.procs import Process, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "market-data"
SYSTEM_NAMESPACE = "syncjob-system"
DATABASE = "tradingagents"
DEMO_JOB = "demo-file-daily"
OPERATOR_SA = "syncjob-operator"
API_SA = "syncjob-api"
FINISHED = {"success", "failed", "skipped", "cancelled", "missed"}


class DemoError(RuntimeError):
    """A step of the demo failed; the message says what happened and where to look."""


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: stop everything and leave."""


def say(message: str = "") -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Print what is being done and how long it took; turn any failure into a DemoError naming the step."""
    say(f"==> {title}")
    started = time.monotonic()
    try:
        yield
    except (DemoError, Stopped, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise DemoError(f"{title} failed: {exc}") from exc
    say(f"    done in {time.monotonic() - started:.1f}s")


def kubeconfig_with_token(path: Path, cluster: LocalCluster, user: str, token: str) -> Path:
    """A kubeconfig for one bearer token, like the cluster's own but for a ServiceAccount."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": cluster.server,
                                                   "certificate-authority": str(cluster.ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
    }))
    path.chmod(0o600)
    return path


class Demo:
    def __init__(self, home: Path, run_timeout: float = 120) -> None:
        self.home = home
        self.run_timeout = run_timeout
        self.logs = home / "logs"
        self.cluster: LocalCluster | None = None
        self.mongo: MongoServer | None = None
        self.operator: Process | None = None
        self.api: Process | None = None
        self.api_port = free_port()  # chosen first, so the dashboard's URL is the demo's first line
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.liveness_url = ""
        self.admin_token = "demo-admin-" + os.urandom(16).hex()
        self.viewer_token = "demo-viewer-" + os.urandom(16).hex()
        self.kubectl_bin = ""

    # -- files ------------------------------------------------------------------------------------------------

    @property
    def env_file(self) -> Path:
        return self.home / "env"

    @property
    def pid_file(self) -> Path:
        return self.home / "demo.pid"

    def prepare_home(self) -> None:
        """Claim .demo/ (refusing if another demo runs from it) and clear what an earlier run left."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.pid_file.exists():
            with contextlib.suppress(ValueError, OSError):
                other = int(self.pid_file.read_text().strip())
                if other != os.getpid() and Path(f"/proc/{other}").exists():
                    raise DemoError(f"another demo (pid {other}) is running from {self.home}; stop it first "
                                    f"(Ctrl-C in its shell, or kill {other})")
        self.pid_file.write_text(str(os.getpid()))
        for stale in ("cluster", "mongo", "logs"):
            shutil.rmtree(self.home / stale, ignore_errors=True)
        for stale_file in ("env", "tokens.yaml", "operator.kubeconfig", "api.kubeconfig"):
            (self.home / stale_file).unlink(missing_ok=True)
        self.logs.mkdir(parents=True)

    @property
    def mongo_uri(self) -> str:
        assert self.mongo is not None
        return f"mongodb://127.0.0.1:{self.mongo.port}/{DATABASE}?directConnection=true"

    # -- kubectl ----------------------------------------------------------------------------------------------

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input_: str | None = None) -> str:
        assert self.cluster is not None
        config = kubeconfig or self.cluster.kubeconfig
        done = subprocess.run([self.kubectl_bin, f"--kubeconfig={config}", *args], capture_output=True, text=True,
                              input=input_, timeout=120)
        if done.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def kustomize(self, path: Path) -> list[dict[str, Any]]:
        out = subprocess.run([self.kubectl_bin, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise DemoError(f"kubectl kustomize {path} failed: {out.stderr.strip()}")
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        args = ["apply", "--server-side", "--field-manager=syncjob-demo", "-f", "-"]
        if namespace:
            args[1:1] = ["-n", namespace]
        self.kubectl(*args, input_=yaml.safe_dump_all(docs))

    # -- steps ------------------------------------------------------------------------------------------------

    def start_cluster(self, with_mongo: bool) -> None:
        title = "Starting the local control plane" + (" and SecantusDB" if with_mongo else "")
        with step(title):
            self.kubectl_bin = str(binaries.ensure("kubectl"))
            self.cluster = LocalCluster(workdir=self.home / "cluster")
            try:
                self.cluster.start()
            except Exception as exc:
                raise DemoError(f"the control plane did not start: {exc}\n"
                                f"    logs: {self.cluster.logs}/*.log") from exc
            if with_mongo:
                # Started from this (the main) thread: children get PR_SET_PDEATHSIG, which fires when the
                # thread that started them ends, not only the process.
                self.mongo = MongoServer(workdir=self.home / "mongo")
                try:
                    self.mongo.start()
                except Exception as exc:
                    raise DemoError(f"SecantusDB did not start: {exc}\n"
                                    f"    log: {self.home / 'mongo'}/secantusdb.log") from exc

    def install(self) -> None:
        assert self.cluster is not None
        with step("Installing the CRD, namespaces, RBAC, admission policy and Secrets"):
            self.apply(self.kustomize(MANIFESTS / "crd"))
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{names.CRD_NAME}")
            # syncjob-system as manifests/default makes it; market-data under the restricted Pod Security
            # Standard too, so the sync pods the operator renders are checked against it.
            namespace_doc = next(d for d in self.kustomize(MANIFESTS / "default")
                                 if d["kind"] == "Namespace")
            market = {"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": NAMESPACE, "labels": {
                          "pod-security.kubernetes.io/enforce": "restricted",
                          "pod-security.kubernetes.io/enforce-version": "latest"}}}
            self.apply([namespace_doc, market])
            self.apply(self.kustomize(MANIFESTS / "rbac"), SYSTEM_NAMESPACE)
            self.apply(self.kustomize(MANIFESTS / "admission-policy"))  # the API runs as its ServiceAccount below
            self.apply(self.kustomize(MANIFESTS / "sync-namespace"), NAMESPACE)
            for ns in (SYSTEM_NAMESPACE, NAMESPACE):
                secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                          "metadata": {"name": "syncjob-mongo", "namespace": ns},
                          "stringData": {"MONGO_URI": self.mongo_uri}}
                self.apply([secret])
        with step(f"Applying the samples to namespace {NAMESPACE}"):
            incumbent = self.kustomize(MANIFESTS / "samples")
            for doc in incumbent:
                SyncJob.from_k8s(doc)  # a sample the shared model rejects stops the demo here, not in the operator
                doc["spec"]["paused"] = True  # they would call the real data sites
            demo = self.kustomize(MANIFESTS / "samples" / "demo")
            for doc in demo:
                SyncJob.from_k8s(doc)
            self.apply(incumbent + demo, NAMESPACE)
            say(f"    {len(incumbent)} incumbent jobs (applied paused: they call the data sites) and {DEMO_JOB}")

    def service_account_kubeconfig(self, name: str) -> Path:
        assert self.cluster is not None
        token = self.kubectl("create", "token", name, "-n", SYSTEM_NAMESPACE, "--duration=720h").strip()
        return kubeconfig_with_token(self.home / f"{name.removeprefix('syncjob-')}.kubeconfig", self.cluster,
                                     f"system:serviceaccount:{SYSTEM_NAMESPACE}:{name}", token)

    def start_operator(self) -> None:
        with step("Starting the operator (python -m syncjob_operator, as ServiceAccount syncjob-operator)"):
            port = free_port()
            self.liveness_url = f"http://127.0.0.1:{port}/healthz"
            env = {
                **os.environ, "KUBECONFIG": str(self.service_account_kubeconfig(OPERATOR_SA)),
                "MONGO_URI": self.mongo_uri, "WATCH_NAMESPACES": NAMESPACE, "OPERATOR_NAMESPACE": SYSTEM_NAMESPACE,
                "SYNC_IMAGE": "ghcr.io/tradingagents/syncjob-sync:0.1.0", "MONGO_SECRET_NAME": "syncjob-mongo",
                "TUSHARE_SECRET_NAME": "syncjob-tushare", "SYNC_SERVICE_ACCOUNT": "syncjob-sync",
                "LIVENESS_ENDPOINT": self.liveness_url,
                "RESYNC_SECONDS": "15", "PYTHONUNBUFFERED": "1",
            }
            self.operator = Process("operator", [sys.executable, "-m", "syncjob_operator"], self.logs, env=env,
                                    cwd=ROOT).start()

            def live() -> bool:
                with urllib.request.urlopen(self.liveness_url, timeout=1) as resp:
                    return bool(resp.status == 200)

            try:
                wait_until(live, 60, "the operator's liveness endpoint", process=self.operator)
            except (RuntimeError, TimeoutError) as exc:
                raise DemoError(f"the operator did not come up: {exc}\n    log: {self.operator.log_path}") from exc

    def start_api(self) -> None:
        with step("Starting the API (python -m syncjob_api, as ServiceAccount syncjob-api, static tokens)"):
            tokens = self.home / "tokens.yaml"
            tokens.write_text(yaml.safe_dump([
                {"token": self.admin_token, "user": "demo-admin", "role": "admin"},
                {"token": self.viewer_token, "user": "demo-viewer", "role": "viewer"},
            ]))
            tokens.chmod(0o600)
            port = self.api_port
            env = {
                **os.environ, "KUBECONFIG": str(self.service_account_kubeconfig(API_SA)),
                "MONGO_URI": self.mongo_uri, "AUTH_MODE": "static", "AUTH_TOKENS_FILE": str(tokens),
                "API_HOST": "127.0.0.1", "API_PORT": str(port), "WATCH_NAMESPACE": NAMESPACE,
                "OPERATOR_NAMESPACE": SYSTEM_NAMESPACE, "PYTHONUNBUFFERED": "1",
            }
            self.api = Process("api", [sys.executable, "-m", "syncjob_api"], self.logs, env=env, cwd=ROOT).start()

            def serving() -> bool:
                status, body = self.api_get("/api/scheduler/jobs", self.viewer_token)
                return status == 200 and DEMO_JOB in json.dumps(body)

            try:
                wait_until(serving, 60, f"GET {self.api_url}/api/scheduler/jobs listing {DEMO_JOB}",
                           process=self.api)
            except (RuntimeError, TimeoutError) as exc:
                raise DemoError(f"the API did not come up: {exc}\n    log: {self.api.log_path}") from exc

    def api_get(self, path: str, token: str) -> tuple[int, Any]:
        req = urllib.request.Request(self.api_url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return exc.code, json.loads(exc.read() or b"null")
            return exc.code, None

    def wait_until_reconciled(self) -> None:
        with step(f"Waiting for the operator to reconcile {DEMO_JOB} into a CronJob"):
            def ready() -> bool:
                out = self.kubectl("get", "sj", DEMO_JOB, "-n", NAMESPACE, "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
                return out.strip() == "True"

            try:
                wait_until(ready, 60, f"SyncJob {NAMESPACE}/{DEMO_JOB} Ready", process=self.operator)
            except (RuntimeError, TimeoutError) as exc:
                raise DemoError(f"{exc}\n    operator log: {self.operator.log_path if self.operator else '-'}") \
                    from exc

    def trigger(self) -> tuple[str, str]:
        """`kubectl annotate ... requested-at=$(date +%s)` as a user would type it; returns (token, run id)."""
        token = str(int(time.time()))
        assert self.cluster is not None
        command = [self.kubectl_bin, f"--kubeconfig={self.cluster.kubeconfig}", "annotate", "sj", DEMO_JOB,
                   "-n", NAMESPACE, f"{names.REQUESTED_AT}={token}", "--overwrite"]
        with step(f"Triggering one run: kubectl annotate sj {DEMO_JOB} -n {NAMESPACE} "
                  f"{names.REQUESTED_AT}={token} --overwrite"):
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise DemoError(f"kubectl annotate failed: {done.stderr.strip()}")
            say(f"    {done.stdout.strip()}")
        return token, manual_run_id(NAMESPACE, DEMO_JOB, token)

    def wait_for_run(self, run_id: str) -> dict[str, Any]:
        """The run's record as GET /api/scheduler/jobs/{id}/executions serves it, once the run has finished."""
        found: dict[str, Any] = {}

        def finished() -> bool:
            status, body = self.api_get(f"/api/scheduler/jobs/{DEMO_JOB}/executions?limit=20", self.viewer_token)
            if status != 200:
                return False
            record = find_record(body, run_id)
            if record is not None and record.get("status") in FINISHED:
                found.update(record)
                return True
            return False

        with step(f"Waiting for run {run_id} to finish (its pod runs `syncjob-sync run` as a local process)"):
            try:
                wait_until(finished, self.run_timeout, f"run {run_id} to finish", interval=0.5, process=self.api)
            except (RuntimeError, TimeoutError) as exc:
                raise DemoError(f"{exc}\n{self.diagnose(run_id)}") from exc
        return found

    def diagnose(self, run_id: str) -> str:
        """What a user would look at when a run does not finish: the Job, its pods and the logs."""
        parts = []
        for args in (("get", "sj,cronjobs,jobs,pods", "-n", NAMESPACE, "-o", "wide"),
                     ("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp")):
            try:
                parts.append(f"$ kubectl {' '.join(args)}\n{self.kubectl(*args)}")
            except DemoError as exc:
                parts.append(str(exc))
        parts.append(f"operator log: {self.operator.log_path if self.operator else '-'}")
        parts.append(f"API log: {self.api.log_path if self.api else '-'}")
        if self.cluster is not None:
            parts.append(f"pod runner log: {self.cluster.logs / 'pod-runner.log'}")
            parts.append(f"pod logs: {self.cluster.workdir / 'pods'}/{NAMESPACE}_{run_id.partition('.')[2]}-*/sync.log")
        return "\n".join(parts)

    def landed(self) -> int:
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000) as client:
            return int(client[DATABASE][mongo.STOCK_DAILY_QUOTES].count_documents({"data_source": "file"}))

    def write_env(self, full: bool) -> None:
        assert self.cluster is not None
        lines = [
            "# Written by `make demo` (python -m testbed.demo); valid while it runs.",
            f"export KUBECONFIG={shlex.quote(str(self.cluster.kubeconfig))}",
            f"export PATH={shlex.quote(str(Path(self.kubectl_bin).parent))}:\"$PATH\"",
        ]
        if full:
            lines += [
                f"export API_URL={shlex.quote(self.api_url)}",
                f"export ADMIN_TOKEN={shlex.quote(self.admin_token)}",
                f"export VIEWER_TOKEN={shlex.quote(self.viewer_token)}",
                f"export MONGO_URI={shlex.quote(self.mongo_uri)}",
            ]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)

    def print_logs(self) -> None:
        say("Logs:")
        if self.cluster is not None:
            say(f"  control plane   {self.cluster.logs}/{{etcd,kube-apiserver,kube-controller-manager,"
                f"kube-scheduler,kwok,pod-runner}}.log")
            say(f"  sync pods       {self.cluster.workdir / 'pods'}/<namespace>_<pod>/sync.log")
        if self.mongo is not None and self.mongo.process is not None:
            say(f"  SecantusDB      {self.mongo.process.log_path}")
        for proc in (self.operator, self.api):
            if proc is not None:
                say(f"  {proc.name:<15} {proc.log_path}")

    # -- the two modes ----------------------------------------------------------------------------------------

    def run_cluster_only(self) -> None:
        self.prepare_home()
        self.start_cluster(with_mongo=False)
        self.write_env(full=False)
        assert self.cluster is not None
        say()
        say(f"Control plane up at {self.cluster.server} (admin kubeconfig {self.cluster.kubeconfig}).")
        say(f"In another shell:  source {self.env_file} && kubectl get nodes")
        self.print_logs()
        self.wait()

    def run(self) -> dict[str, Any]:
        say(f"Dashboard: {self.dashboard_url}  (up in about a minute; sign in with the admin or viewer token "
            "printed below)")
        self.prepare_home()
        self.start_cluster(with_mongo=True)
        self.install()
        self.start_operator()
        self.start_api()
        self.write_env(full=True)
        self.wait_until_reconciled()
        _, run_id = self.trigger()
        record = self.wait_for_run(run_id)
        count = self.landed()
        self.report(record, count)
        if record.get("status") != "success":
            raise DemoError(f"run {run_id} ended {record.get('status')!r}, not 'success'\n{self.diagnose(run_id)}")
        if count == 0:
            raise DemoError(f"run {run_id} succeeded but no daily bars landed in {DATABASE}.stock_daily_quotes")
        return record

    @property
    def dashboard_url(self) -> str:
        return f"{self.api_url}/dashboard/"

    def report(self, record: dict[str, Any], count: int) -> None:
        assert self.cluster is not None
        say()
        say(f"Dashboard    {self.dashboard_url}  (sign in with the admin or the viewer token)")
        say(f"Run record (GET {self.api_url}/api/scheduler/jobs/{DEMO_JOB}/executions):")
        say(json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True))
        say(f"Landed: {count} daily bars from the file source in {DATABASE}.{mongo.STOCK_DAILY_QUOTES}")
        say()
        say(f"API          {self.api_url}/api/scheduler  (docs: {self.api_url}/docs)")
        say(f"Admin token  {self.admin_token}")
        say(f"Viewer token {self.viewer_token}")
        say(f"MongoDB      {self.mongo_uri}")
        say(f"Kubeconfig   {self.cluster.kubeconfig} (admin)")
        say()
        say(f"In another shell:  source {self.env_file}")
        say(f"  kubectl get sj -n {NAMESPACE}")
        say(f"  kubectl annotate sj {DEMO_JOB} -n {NAMESPACE} {names.REQUESTED_AT}=\"$(date +%s)\" --overwrite")
        say(f"  curl -s -H \"Authorization: Bearer $VIEWER_TOKEN\" $API_URL/api/scheduler/jobs/{DEMO_JOB}/executions")
        say(f"  curl -s -X POST -H \"Authorization: Bearer $ADMIN_TOKEN\" "
            f"$API_URL/api/scheduler/jobs/{DEMO_JOB}/trigger")
        self.print_logs()

    def wait(self) -> None:
        """Stay up until a signal; a component that dies ends the demo with its log tail."""
        say("Running; Ctrl-C (or SIGTERM) stops everything.")
        while True:
            time.sleep(1)
            for proc in (self.operator, self.api):
                if proc is not None and not proc.alive():
                    raise DemoError(f"{proc.name} exited:\n{proc.log_tail()}\n    log: {proc.log_path}")

    def stop(self) -> None:
        # Both at once: kopf takes about 6 s to wind down after SIGTERM.
        stoppers = [threading.Thread(target=proc.stop, kwargs={"grace": 10.0})
                    for proc in (self.api, self.operator) if proc is not None]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        if self.mongo is not None:
            self.mongo.stop()
        if self.cluster is not None:
            self.cluster.stop()
        self.env_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text()) == os.getpid():
                self.pid_file.unlink()


def find_record(body: Any, run_id: str) -> dict[str, Any] | None:
    """The record of one run in an API response, whatever list wrapper the envelope's data uses."""
    if isinstance(body, dict):
        if run_id in (body.get("_id"), body.get("id"), body.get("run_id"), body.get("execution_id")):
            return body
        values: Any = body.values()
    elif isinstance(body, list):
        values = body
    else:
        return None
    for value in values:
        if isinstance(value, dict | list):
            found = find_record(value, run_id)
            if found is not None:
                return found
    return None


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cluster-only", action="store_true", help="start only the local control plane")
    mode.add_argument("--smoke", action="store_true", help="exit 0 once the demo run's record is printed")
    parser.add_argument("--home", type=Path, default=ROOT / ".demo", help="state, logs and env file (.demo/)")
    parser.add_argument("--run-timeout", type=float, default=120, help="seconds to wait for the demo run")
    args = parser.parse_args(argv)

    demo = Demo(args.home.resolve(), run_timeout=args.run_timeout)
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    code = 0
    try:
        if args.cluster_only:
            demo.run_cluster_only()
        else:
            demo.run()
            if args.smoke:
                say("Smoke run passed.")
            else:
                demo.wait()
    except Stopped as exc:
        say(f"\nReceived {exc}; stopping.")
    except DemoError as exc:
        say(f"\nDemo failed: {exc}")
        demo.print_logs()
        code = 1
    except Exception:
        say("\nDemo failed unexpectedly:")
        traceback.print_exc()
        demo.print_logs()
        code = 1
    finally:
        # A second signal while stopping must not leave children behind: they die with us (PDEATHSIG) anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
        say("Stopped everything the demo started." + (f" Logs stay in {demo.home}." if code else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
