"""A real node for the test bed: containerd 1.6 and runc from Debian, and a kubelet built from the Go module proxy.

kwok and the pod runner make pods out of local processes, which is fast and enough for most tests, but it never
shows whether the images start, run read-only as non-root, pass their probes, mount their Secrets and stop on
SIGTERM. This node does: pods run in real containers, on the host's network (the tests may use loopback addresses
only, so every pod of a real-node test sets `hostNetwork: true` and the kubelet binds 127.0.0.1).

What it changes on the machine, and undoes in `stop()`:
- processes: containerd, the kubelet and the runc shims of the pods, each stopped by PID (the shims are found by
  the containerd socket in their command line, which lives in this node's own folder);
- mounts under its folder (overlay snapshots, sandbox /dev/shm, Secret and projected volumes), unmounted by path;
- the sysctls the kubelet sets machine-wide (`vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops`, ...),
  saved before it starts and written back;
- the cgroups the kubelet makes (`kubepods` in each cgroup v1 hierarchy), removed when empty;
- iptables chains the kubelet adds that were not there before (its canary chains);
- the folders the kubelet and the shims use at fixed paths (`/var/lib/kubelet/device-plugins`, the log links in
  `/var/log/containers`, `/run/containerd`), when they did not exist before.

What to undo is also written to `~/.cache/syncjob-operator/real-node.json` before the kubelet starts, so a run that
was killed before it could clean up (SIGKILL, a CI timeout) is cleaned up by the next start.

Debian's packages (containerd, runc, CNI plugins, gcc for the pause binary) are installed when missing; the pause
image is compiled from `pause.c` in the Kubernetes module source and kept in podman's storage.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed import binaries, images, versions
from testbed.gomod import GO_DIR
from testbed.procs import Process, free_port, wait_until

NODE_NAME = "testbed-node"
PAUSE_IMAGE = "localhost/pause:testbed"
# The sysctls kubelet's container manager sets (pkg/kubelet/cm: setupKernelTunables) plus the key quotas.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)
IPTABLES_CHAINS = ("KUBE-KUBELET-CANARY", "KUBE-FIREWALL")
# Folders the kubelet and containerd's shims use whatever their configuration says; removed if they made them.
FIXED_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/run/containerd")
IPTABLES_TABLES = ("filter", "nat", "mangle")
_MNT_DETACH = 2


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in KUBELET_SYSCTLS:
        with contextlib.suppress(OSError):
            out[key] = Path("/proc/sys", key).read_text().strip()
    return out


def restore_sysctls(saved: dict[str, str]) -> None:
    for key, value in saved.items():
        path = Path("/proc/sys", key)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def _iptables_chains() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in IPTABLES_TABLES:
            done = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True)
            for line in done.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "-N" and parts[1] in IPTABLES_CHAINS:
                    found.add((tool, table, parts[1]))
    return found


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_all(folder: Path) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for _ in range(3):
        points = _mounts_under(folder)
        if not points:
            return
        for point in points:
            if libc.umount2(point.encode(), 0) != 0:
                libc.umount2(point.encode(), _MNT_DETACH)


def _pids_mentioning(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def _kill_cgroup_members(name: str) -> None:
    """SIGKILL, by PID, every process left in the cgroups the kubelet made for pods."""
    top = Path("/sys/fs/cgroup/pids", name)
    for procs in top.rglob("cgroup.procs") if top.is_dir() else []:
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)


def _remove_empty_cgroups(name: str) -> None:
    root = Path("/sys/fs/cgroup")
    for hierarchy in root.iterdir() if root.is_dir() else []:
        top = hierarchy / name
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def remove_fixed_paths(workdir: Path, made: list[str]) -> None:
    """Remove the kubelet's log links into `workdir`, and the fixed folders that did not exist before the node."""
    logs = Path("/var/log/containers")
    for link in logs.iterdir() if logs.is_dir() else []:
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(workdir) + "/"):
                link.unlink()
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _state_file() -> Path:
    return images.cache_dir() / "real-node.json"


def recover_from_a_killed_run() -> None:
    """Undo what a previous node left behind when its test process died before stop() (by its recorded folder)."""
    state_file = _state_file()
    if not state_file.exists():
        return
    with contextlib.suppress(ValueError, OSError, KeyError):
        state = json.loads(state_file.read_text())
        workdir = Path(state["workdir"])
        for pid in _pids_mentioning(str(workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        _kill_cgroup_members("kubepods")
        unmount_all(workdir)
        restore_sysctls(state["sysctls"])
        _remove_empty_cgroups("kubepods")
        remove_fixed_paths(workdir, state.get("made", []))
    state_file.unlink(missing_ok=True)


def ensure_pause_image(engine: images.Engine) -> None:
    """The sandbox image, from upstream's pause.c compiled statically (no registry to pull it from)."""
    if engine.exists(PAUSE_IMAGE):
        return
    images.ensure_debian_packages(["gcc", "/usr/include/stdio.h"])
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                check=True).stdout.strip()
    source = Path(gomodcache) / f"k8s.io/kubernetes@{versions.KUBERNETES}/build/pause/linux/pause.c"
    if not source.is_file():
        subprocess.run(["go", "mod", "download", f"k8s.io/kubernetes@{versions.KUBERNETES}"],
                       cwd=GO_DIR / "k8s", check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="syncjob-pause-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        subprocess.run(["gcc", "-Os", "-static", "-o", str(rootfs / "pause"), str(source)], check=True)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", f"{tmp}/pause.tar", "pause"], check=True)
        subprocess.run(["podman", "import", "--change", 'ENTRYPOINT ["/pause"]', f"{tmp}/pause.tar", PAUSE_IMAGE],
                       check=True, capture_output=True, env=engine.env)


def containerd_config(workdir: Path) -> str:
    return f"""\
version = 2
root = "{workdir}/root"
state = "{workdir}/state"
[grpc]
  address = "{workdir}/containerd.sock"
[ttrpc]
  address = "{workdir}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{workdir}/cni"
"""


def kubelet_config(workdir: Path, port: int, healthz_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{workdir}/containerd/containerd.sock",
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False, "oomScoreAdj": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {}},
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(workdir / "pki" / "kubelet.crt"), "tlsPrivateKeyFile": str(workdir / "pki" / "kubelet.key"),
        "clusterDomain": "cluster.local", "resolvConf": "/etc/resolv.conf",
        "registerNode": True, "maxPods": 30, "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "syncFrequency": "10s", "fileCheckFrequency": "10s", "nodeStatusUpdateFrequency": "5s",
        "localStorageCapacityIsolation": True, "makeIPTablesUtilChains": False,
        "shutdownGracePeriod": "0s", "podLogsDir": str(workdir / "pod-logs"),
    }


@dataclass
class RealNode:
    """containerd and a kubelet registered as `testbed-node` with the local API server."""

    workdir: Path
    kubeconfig: Path
    log_dir: Path
    processes: list[Process] = field(default_factory=list)
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    chains_before: set[tuple[str, str, str]] = field(default_factory=set)
    made_paths: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def _ctr(self, *args: str, input_file: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              check=True, capture_output=True, stdin=input_file.open("rb") if input_file else None)

    def crictl_argv(self) -> list[str]:
        return [str(binaries.ensure("crictl")), "--runtime-endpoint", f"unix://{self.socket}",
                "--image-endpoint", f"unix://{self.socket}", "--timeout", "20s"]

    def crictl(self, *args: str) -> str:
        return subprocess.run([*self.crictl_argv(), *args], check=True, capture_output=True, text=True).stdout

    def start(self) -> RealNode:
        started = time.monotonic()
        images.ensure_debian_packages(["containerd", "ctr", "runc", "/usr/lib/cni/loopback", "podman", "mount"])
        kubelet = binaries.ensure("kubelet")
        binaries.ensure("crictl")
        ensure_pause_image(images.Engine("podman"))
        recover_from_a_killed_run()
        self.saved_sysctls = read_sysctls()
        self.chains_before = _iptables_chains()
        _state_file().parent.mkdir(parents=True, exist_ok=True)
        self.made_paths = [p for p in FIXED_PATHS if not Path(p).exists()]
        _state_file().write_text(json.dumps({"workdir": str(self.workdir), "sysctls": self.saved_sysctls,
                                             "made": self.made_paths}))
        ctr_dir = self.workdir / "containerd"
        (ctr_dir / "cni").mkdir(parents=True, exist_ok=True)
        (ctr_dir / "cni" / "10-loopback.conflist").write_text(
            '{"cniVersion":"0.4.0","name":"loopback-only","plugins":[{"type":"loopback"}]}\n')
        (ctr_dir / "config.toml").write_text(containerd_config(ctr_dir))
        containerd = self._spawn("containerd", ["containerd", "--config", str(ctr_dir / "config.toml")])
        wait_until(lambda: self.socket.exists() and self._ctr("version"), 30, "containerd", process=containerd)
        self.load_image(PAUSE_IMAGE)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={NODE_NAME}", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(pki / "kubelet.key"), "-out", str(pki / "kubelet.crt")],
                       check=True, capture_output=True)
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(kubelet_config(self.workdir, free_port(), free_port())))
        self._spawn("kubelet", [
            str(kubelet), f"--config={config}", f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={self.workdir / 'kubelet'}", f"--hostname-override={NODE_NAME}",
            "--node-labels=syncjob.testbed/real-node=true", "--v=1",
        ])
        self.startup_seconds = time.monotonic() - started
        return self

    def _spawn(self, name: str, argv: list[str]) -> Process:
        env = {**os.environ, "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        proc = Process(name, argv, self.log_dir, env=env).start()
        self.processes.append(proc)
        return proc

    def load_images(self, refs: list[str]) -> None:
        """Copy images from podman's storage into containerd's (pods use imagePullPolicy: Never), two at a time."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(self.load_image, refs))

    def load_image(self, ref: str) -> None:
        engine = images.Engine("podman")
        with tempfile.NamedTemporaryFile(prefix="syncjob-image-", suffix=".tar", dir=self.workdir) as tar:
            subprocess.run(["podman", "save", "--format", "docker-archive", "-o", tar.name, ref], check=True,
                           capture_output=True, env=engine.env)
            self._ctr("images", "import", tar.name)

    def alive(self) -> bool:
        return all(p.alive() for p in self.processes)

    def stop(self) -> None:
        kubelet = [p for p in self.processes if p.name == "kubelet"]
        for proc in kubelet:
            proc.stop(grace=10)
        if self.socket.exists():
            with contextlib.suppress(Exception):
                self.crictl("rmp", "--all", "--force")
        for proc in reversed([p for p in self.processes if p.name != "kubelet"]):
            proc.stop(grace=10)
        self.processes.clear()
        # The runc shims are started by containerd and outlive it: stop the ones serving this node, by PID.
        for pid in _pids_mentioning(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        _kill_cgroup_members("kubepods")
        unmount_all(self.workdir)
        restore_sysctls(self.saved_sysctls)
        for tool, table, chain in _iptables_chains() - self.chains_before:
            subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True)
            subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True)
        _remove_empty_cgroups("kubepods")
        remove_fixed_paths(self.workdir, self.made_paths)
        _state_file().unlink(missing_ok=True)
