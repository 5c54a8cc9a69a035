"""Where the pinned control-plane binaries live, building them on first use."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parents[1]
VERSIONS_FILE = E2E_DIR / "versions.env"
BUILD_SCRIPT = E2E_DIR / "build-binaries.sh"
NAMES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kwok",
    "kwokctl",
    "helm",
    "promtool",
    "versitygw",
)


def pinned_versions() -> dict[str, str]:
    versions = {}
    for line in VERSIONS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


@dataclass(frozen=True)
class Binaries:
    directory: Path
    kubernetes_version: str

    def path(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def gateway_api_crds(self) -> Path:
        """The Gateway API's standard CRDs (fetched by build-binaries.sh)."""
        return self.directory / f"gateway-api-v{pinned_versions()['GATEWAY_API_VERSION']}"

    @property
    def keda_crds(self) -> Path:
        """KEDA's ScaledObject CRD (fetched by build-binaries.sh)."""
        return self.directory / f"keda-v{pinned_versions()['KEDA_VERSION']}"

    @property
    def missing(self) -> list[str]:
        absent = [n for n in NAMES if not os.access(self.directory / n, os.X_OK)]
        if not (self.gateway_api_crds / "gateway.networking.k8s.io_httproutes.yaml").is_file():
            absent.append(self.gateway_api_crds.name)
        if not (self.keda_crds / "keda.sh_scaledobjects.yaml").is_file():
            absent.append(self.keda_crds.name)
        return absent


def default_bin_dir() -> Path:
    version = pinned_versions()["KUBERNETES_VERSION"]
    override = os.environ.get("QMO_BIN_DIR")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "qmo" / "bin" / f"k8s-{version}"


def ensure_binaries(*, build: bool = True) -> Binaries:
    """The binaries, built by e2e/build-binaries.sh if any is missing (and `build` is set)."""
    binaries = Binaries(default_bin_dir(), pinned_versions()["KUBERNETES_VERSION"])
    if binaries.missing:
        if not build:
            missing = ", ".join(binaries.missing)
            raise FileNotFoundError(
                f"missing {missing} in {binaries.directory}: run `make binaries`"
            )
        subprocess.run([str(BUILD_SCRIPT)], check=True)
    return binaries
