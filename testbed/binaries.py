"""Find or build the test bed's binaries: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok.

Look-up order for each binary:
1. `TESTBED_ASSETS` or `KUBEBUILDER_ASSETS` (controller-runtime envtest's layout: one folder holding the binaries),
   so a user who already has them skips the build;
2. the cache, `$SYNCJOB_CACHE_DIR/bin/<component>-<version>/` (default `~/.cache/syncjob-operator`), which lives
   outside the work tree so that a fresh clone on the same machine starts warm;
3. a build from the Go module proxy with our wrapper modules in `testbed/go/` (kwok with `go install`).

`python -m testbed.binaries` builds whatever is missing and prints where each binary is;
`python -m testbed.binaries kubelet crictl` does the same for the real node's binaries (tests/deploy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed import versions
from testbed.gomod import GO_DIR


class MissingToolError(RuntimeError):
    """Raised when a binary is neither given, cached nor buildable."""


@dataclass(frozen=True)
class Component:
    version: str
    module_dir: str  # "" for binaries installed with `go install`
    binaries: tuple[str, ...]
    install_path: str = ""  # the module path `go install` takes, with `/<binary>` appended


def _k8s_ldflags(version: str) -> str:
    _, minor, _ = version.lstrip("v").split(".")
    return " ".join([
        f"-X k8s.io/component-base/version.gitVersion={version}",
        "-X k8s.io/component-base/version.gitMajor=1",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        "-s -w",
    ])


COMPONENTS = {
    "kubernetes": Component(
        versions.KUBERNETES, "k8s",
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    ),
    "etcd": Component(versions.ETCD, "etcd", ("etcd",)),
    "kwok": Component(versions.KWOK, "", ("kwok",), "sigs.k8s.io/kwok/cmd"),
    # The real node's (tests/deploy): its own component, so adding it did not invalidate the cached control plane.
    "kubelet": Component(versions.KUBERNETES, "k8s", ("kubelet",)),
    "crictl": Component(versions.CRICTL, "", ("crictl",), "sigs.k8s.io/cri-tools/cmd"),
}
# What `ensure_all()` provides: the control plane of every test. The real node's binaries are built on demand.
CONTROL_PLANE = ("kubernetes", "etcd", "kwok")


def cache_dir() -> Path:
    base = os.environ.get("SYNCJOB_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    ) / "syncjob-operator"
    return Path(base)


def _given_dirs() -> list[Path]:
    return [Path(os.environ[v]) for v in ("TESTBED_ASSETS", "KUBEBUILDER_ASSETS") if os.environ.get(v)]


def _component_dir(name: str) -> Path:
    comp = COMPONENTS[name]
    return cache_dir() / "bin" / f"{name}-{comp.version}"


def _build(name: str, out: Path) -> None:
    if shutil.which("go") is None:
        raise MissingToolError(
            f"Building {name} {COMPONENTS[name].version} needs Go >= 1.24 on PATH (apt-get install golang, or "
            "https://go.dev/dl), or set TESTBED_ASSETS/KUBEBUILDER_ASSETS to a folder holding prebuilt "
            "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok."
        )
    comp = COMPONENTS[name]
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
    try:
        if not comp.module_dir:
            for binary in comp.binaries:
                subprocess.run(
                    ["go", "install", f"{comp.install_path}/{binary}@{comp.version}"],
                    check=True, env={**env, "GOBIN": str(tmp)},
                )
        else:
            ldflags = _k8s_ldflags(comp.version) if comp.module_dir == "k8s" else "-s -w"
            for binary in comp.binaries:
                print(f"Building {binary} {comp.version} (a few minutes cold) ...", file=sys.stderr, flush=True)
                subprocess.run(
                    ["go", "build", "-ldflags", ldflags, "-o", str(tmp / binary), f"./cmd/{binary}"],
                    check=True, env=env, cwd=GO_DIR / comp.module_dir,
                )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure(name: str) -> Path:
    """Return the path of one binary, building its component if it is nowhere to be found."""
    component = next(c for c, comp in COMPONENTS.items() if name in comp.binaries)
    for folder in _given_dirs():
        if (folder / name).is_file():
            return folder / name
    out = _component_dir(component)
    if not (out / name).is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        _build(component, out)
    return out / name


def ensure_all(components: tuple[str, ...] = CONTROL_PLANE) -> dict[str, Path]:
    return {b: ensure(b) for name in components for b in COMPONENTS[name].binaries}


def main() -> None:
    components = tuple(sys.argv[1:]) or CONTROL_PLANE
    for binary, path in ensure_all(components).items():
        print(f"{binary}\t{path}")


if __name__ == "__main__":
    main()
