"""Rendering the Helm chart in tests: `helm template` with the pinned helm, parsed to dicts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from e2e.cluster.binaries import ensure_binaries
from tests.support.kube import REPO

CHART = REPO / "charts" / "qmo"
KUBE_VERSION = "1.36.3"


def helm_path() -> str | None:
    """The pinned helm, or None where the binaries are not built (pure tier without setup)."""
    try:
        return ensure_binaries(build=False).path("helm")
    except FileNotFoundError:
        return None


def set_flags(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@dataclass
class Rendered:
    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    path = helm_path()
    assert path is not None, "helm is not built: run `make binaries`"
    result = subprocess.run([path, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template(
    values: dict[str, str] | None = None, *, release: str = "qmo", namespace: str = "qmo-system"
) -> Rendered:
    out = helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", KUBE_VERSION, *set_flags(values or {}),
    ).stdout  # fmt: skip
    return Rendered([d for d in yaml.safe_load_all(out) if d])
