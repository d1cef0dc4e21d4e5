"""Build the project's images with whatever builds images on this machine: Docker where it is, else podman or buildah.

Users run this through `make images`; the real-node test bed runs it on demand. It exists because the machines this
project is developed and tested on have no Docker and no reachable container registry, and because nothing we ship
was ever built before it was part of `make test`:

- The engine is `CONTAINER_ENGINE` (docker, podman, buildah), else Docker when its daemon answers, else podman, else
  buildah. podman and buildah get the settings these VMs need (`containers.conf`: runc, cgroupfs, rlimits the VM can
  grant; see `CONTAINERS_CONF`), build with `--pull=never --network=host` and see the host's CA bundle, so PyPI is
  reached through an intercepting proxy too.
- The base is `BASE_IMAGE` when given. With Docker it defaults to the Dockerfiles' `python:3.11-slim`; with podman or
  buildah, where no registry may be reachable, a base is made from Debian's packages with mmdebstrap (bookworm,
  Python 3.11) and passed as the `BASE_IMAGE` build argument, never retagged as the upstream image.
- Each image is tagged by a content hash of its Dockerfile, the files it copies and its base, so an unchanged image
  is not rebuilt (podman's local storage persists on the machine), then tagged `REGISTRY/NAME:TAG` as well.
- A new image must answer `--help` with a read-only root filesystem and no network, as a non-root user.
- The build prints each image's size and build time.

Standard library only, so `make images` needs no virtualenv. `python -m testbed.images --help` lists the options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UPSTREAM_BASE = "docker.io/library/python:3.11-slim"
LOCAL_PREFIX = "localhost"

# What the VMs need from Debian to build and run containers (no Docker): see docs/deploy.md.
DEBIAN_PACKAGES = {
    "podman": "podman", "buildah": "buildah", "runc": "runc", "mmdebstrap": "mmdebstrap",
    "containerd": "containerd", "ctr": "containerd", "/usr/lib/cni/loopback": "containernetworking-plugins",
    "gcc": "gcc", "/usr/include/stdio.h": "libc6-dev", "mount": "mount",
}

# runc, not crun (crun refuses the hybrid cgroup layout); rlimits within the VM's hard limits (no CAP_SYS_RESOURCE).
CONTAINERS_CONF = """\
# Written by testbed/images.py for podman and buildah on machines without systemd or CAP_SYS_RESOURCE.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""

# The local base: Debian's Python 3.11 with venv, nothing else; documentation, manuals and locales left out.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tzdata")
BASE_DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/lintian/*",
)
# Removed after installation (excluding them from dpkg breaks python3.11's postinst): CPython's own test suite.
BASE_REMOVE = ("var/lib/apt/lists/*", "var/cache/apt/*", "var/log/*", "usr/lib/python3.11/test",
               "usr/lib/python3.11/idlelib", "usr/lib/python3.11/lib2to3/tests")


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    inputs: tuple[str, ...]  # paths under ROOT that the Dockerfile copies


COMMON = ("pyproject.toml", "constraints.txt", "README.md", "syncjob")
IMAGES = {
    "syncjob-operator": Image("syncjob-operator", "operator/Dockerfile", (*COMMON, "operator")),
    "syncjob-api": Image("syncjob-api", "api/Dockerfile", (*COMMON, "api", "web/package.json", "web/package-lock.json",
                                                         "web/index.html", "web/vite.config.js", "web/src")),
    "syncjob-sync": Image("syncjob-sync", "sync_image/Dockerfile", (*COMMON, "sync_image")),
    # The test bed's MongoDB-protocol server; not shipped, built the same way.
    "syncjob-secantusdb": Image("syncjob-secantusdb", "testbed/secantusdb/Dockerfile",
                                ("constraints.txt", "testbed/secantusdb")),
}
SHIPPED = ("syncjob-operator", "syncjob-api", "syncjob-sync")


class ImageBuildError(RuntimeError):
    """An engine, a package or a build failed; the message says which."""


def cache_dir() -> Path:
    base = os.environ.get("SYNCJOB_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syncjob-operator"
    return Path(base)


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def ensure_debian_packages(commands: list[str]) -> None:
    """apt-get install the Debian packages that provide the missing commands (root, Debian or Ubuntu only)."""
    missing = sorted({
        DEBIAN_PACKAGES[c] for c in commands
        if not (Path(c).exists() if c.startswith("/") else shutil.which(c) or Path("/usr/sbin", c).exists())
    })
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ImageBuildError(f"Missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})")
    log(f"Installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def engine_env() -> dict[str, str]:
    """The environment for podman, buildah and ctr: our containers.conf unless the user gives one."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        conf = cache_dir() / "containers.conf"
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    return env


def choose_engine() -> str:
    wanted = os.environ.get("CONTAINER_ENGINE", "")
    if wanted:
        return wanted
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    if shutil.which("buildah"):
        return "buildah"
    ensure_debian_packages(["podman", "runc"])
    return "podman"


class Engine:
    """One image engine's commands: build, inspect, tag, save."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.env = os.environ.copy() if name == "docker" else engine_env()

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.name, *args], env=self.env, text=True, capture_output=capture)
        if check and done.returncode != 0:
            raise ImageBuildError(f"{self.name} {' '.join(args)} failed:\n{done.stderr if capture else ''}")
        return done

    def exists(self, ref: str) -> bool:
        return self.run("inspect", "--type", "image", ref, check=False).returncode == 0

    def image_id(self, ref: str) -> str:
        return self.run("inspect", "--type", "image", "--format", "{{.Id}}", ref).stdout.strip()

    def size(self, ref: str) -> int:
        if self.name == "buildah":  # buildah does not report sizes; podman reads the same storage
            if shutil.which("podman") is None:
                return 0
            return int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", ref], env=self.env,
                                      capture_output=True, text=True, check=True).stdout.strip())
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def remove_stale(self, name: str, keep: str) -> None:
        """Untag this image's builds of older inputs (`h-*` tags), so the image store does not grow run by run."""
        listed = self.run("images", "--format", "{{.Repository}}:{{.Tag}}", f"{LOCAL_PREFIX}/{name}", check=False)
        stale = [ref for ref in listed.stdout.split() if ":h-" in ref and ref != keep]
        if stale:
            self.run("rmi", *stale, check=False)

    def tag(self, ref: str, new: str) -> None:
        self.run("tag", ref, new)

    def build(self, dockerfile: Path, tags: list[str], build_args: dict[str, str]) -> None:
        args: list[str] = []
        if self.name == "buildah":
            args = ["bud", "--pull-never", "--network=host", "--layers"]
        elif self.name == "podman":
            args = ["build", "--pull=never", "--network=host", "--layers"]
        else:
            args = ["build"]
        if self.name != "docker" and CA_BUNDLE.is_file():
            args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for tag in tags:
            args += ["-t", tag]
        done = self.run(*args, "-f", str(dockerfile), str(ROOT), capture=False, check=False)
        if done.returncode != 0:
            raise ImageBuildError(f"{self.name} build -f {dockerfile.relative_to(ROOT)} failed (output above)")


def smoke_test(engine: Engine, ref: str) -> None:
    """The image answers --help with a read-only root filesystem, no network, as the non-root user it declares."""
    if engine.name == "buildah":
        return
    run = ("run", "--rm", "--read-only", "--network=none")
    helped = engine.run(*run, ref, "--help", check=False)
    if helped.returncode != 0 or "usage" not in helped.stdout.lower():
        raise ImageBuildError(f"{ref} --help failed (exit {helped.returncode}):\n{helped.stdout}{helped.stderr}")
    uid = engine.run(*run, "--entrypoint", "id", ref, "-u").stdout.strip()
    if uid == "0":
        raise ImageBuildError(f"{ref} runs as root")


def _hash_paths(digest: hashlib._Hash, paths: list[Path]) -> None:
    for path in sorted(paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                           and not p.name.endswith((".pyc", ".egg-info")))
        else:
            files = [path]
        for f in files:
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())


def content_hash(image: Image, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode() + b"\0")
    _hash_paths(digest, [ROOT / image.dockerfile, *(ROOT / p for p in image.inputs)])
    return digest.hexdigest()[:12]


def base_recipe_hash() -> str:
    recipe = [BASE_PACKAGES, BASE_DPKG_OPTS, BASE_REMOVE, "bookworm", "merged-usr"]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


def ensure_local_base(engine: Engine) -> str:
    """A Debian bookworm base with Python 3.11 made from Debian's packages, imported once and kept."""
    ref = f"{LOCAL_PREFIX}/syncjob-base:bookworm-{base_recipe_hash()}"
    if engine.exists(ref):
        return ref
    ensure_debian_packages(["mmdebstrap"])
    started = time.monotonic()
    log(f"Making the base image {ref} from Debian's packages (mmdebstrap, about a minute)")
    with tempfile.TemporaryDirectory(prefix="syncjob-base-") as tmp:
        tar = Path(tmp) / "base.tar"
        subprocess.run([
            # The merged-usr hook sets up /usr without the usrmerge package, which would pull in all of perl.
            "mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(BASE_PACKAGES)}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            *(f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTS),
            "--customize-hook=rm -rf " + " ".join(f'"$1"/{p}' for p in BASE_REMOVE),
            "bookworm", str(tar),
        ], check=True)
        importer = "podman" if engine.name == "buildah" and shutil.which("podman") else engine.name
        subprocess.run([importer, "import", "--change", 'CMD ["python3"]', "--change", "ENV LANG=C.UTF-8",
                        str(tar), ref], check=True, env=engine.env, capture_output=True)
    log(f"Made {ref} in {time.monotonic() - started:.0f} s")
    return ref


def resolve_base(engine: Engine) -> str:
    given = os.environ.get("BASE_IMAGE", "")
    if given:
        return given
    if engine.name == "docker" or engine.exists(UPSTREAM_BASE):
        return UPSTREAM_BASE
    return ensure_local_base(engine)


@dataclass
class Built:
    name: str
    ref: str
    size: int
    seconds: float
    rebuilt: bool


def build(names: list[str], registry: str, tag: str, engine_name: str | None = None) -> list[Built]:
    """Build (or find by content hash) each named image; tag it `<registry>/<name>:<tag>` too."""
    engine = Engine(engine_name or choose_engine())
    if engine.name in ("podman", "buildah"):
        ensure_debian_packages([engine.name, "runc"])
    base = resolve_base(engine)
    base_id = engine.image_id(base) if engine.exists(base) else base
    results = []
    for name in names:
        image = IMAGES[name]
        local = f"{LOCAL_PREFIX}/{name}:h-{content_hash(image, base_id)}"
        started = time.monotonic()
        rebuilt = not engine.exists(local)
        if rebuilt:
            log(f"Building {name} with {engine.name} on {base}")
            engine.build(ROOT / image.dockerfile, [local], {"BASE_IMAGE": base})
            if name in SHIPPED:
                smoke_test(engine, local)
            engine.remove_stale(name, local)
        engine.tag(local, f"{registry}/{name}:{tag}")
        results.append(Built(name, local, engine.size(local), time.monotonic() - started, rebuilt))
    for b in results:
        what = f"built in {b.seconds:.0f} s" if b.rebuilt else "unchanged"
        log(f"{registry}/{b.name}:{tag} = {b.ref}: {b.size / 1e6:.0f} MB, {what}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default="ghcr.io/tradingagents", help="registry prefix of the final tags")
    parser.add_argument("--tag", default="0.1.0", help="tag of the final images")
    parser.add_argument("--engine", choices=["docker", "podman", "buildah"], help="default: CONTAINER_ENGINE or "
                        "the first of docker (daemon running), podman, buildah")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help=f"of {', '.join(IMAGES)} (default: {' '.join(SHIPPED)})")
    args = parser.parse_args(argv)
    unknown = set(args.images) - set(IMAGES)
    if unknown:
        parser.error(f"unknown images: {', '.join(sorted(unknown))}")
    try:
        build(args.images or list(SHIPPED), args.registry, args.tag, args.engine)
    except (ImageBuildError, subprocess.CalledProcessError) as exc:
        sys.exit(f"images: {exc}")


if __name__ == "__main__":
    main()
