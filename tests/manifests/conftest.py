"""Helpers for the manifest tests: build a kustomization with the test bed's kubectl, no cluster needed."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = sorted(
    p.parent for p in [*MANIFESTS.rglob("kustomization.yaml"), ROOT / "crds" / "kustomization.yaml"]
)


def kubectl_bin() -> str:
    return str(binaries.ensure("kubectl"))


@cache
def _build(path: Path) -> str:
    done = subprocess.run([kubectl_bin(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {path} failed: {done.stderr}"
    return done.stdout


def build(path: Path) -> list[dict[str, Any]]:
    """The objects a kustomization renders (a fresh copy each call, so tests may edit them)."""
    return [doc for doc in yaml.safe_load_all(_build(path)) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
