"""A real Kubernetes control plane on loopback, with fake GPU nodes, for tests and the demo.

kwokctl (binary runtime) starts the self-built etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the kwok controller as local processes, with its own PKI and RBAC
authorization. kwok then plays the kubelet: scheduled pods become Running and Job pods
Succeeded. Every process binds 127.0.0.1; data lives in a temp dir that `down` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster.binaries import Binaries, ensure_binaries
from qmo.fleet import build_nodes, load_fleet

REPO = Path(__file__).resolve().parents[2]
FLEETS_DIR = REPO / "e2e" / "fleets"
STAGES = REPO / "e2e" / "stages" / "stages.yaml"
STATE_DIR = REPO / ".qmo" / "clusters"

# kube-apiserver's default Service range is a /24 (about 250 ClusterIPs): too small for the
# scale benchmark's thousands of Services. A /16 holds 65,000.
SERVICE_CIDR = "10.96.0.0/16"
KWOKCTL_CONFIG = {
    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
    "kind": "KwokctlConfiguration",
    "options": {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "disableQPSLimits": True,
        "kubeAuthorization": True,
        "kubeAdmission": True,
    },
    "componentsPatches": [
        {
            "name": "kube-apiserver",
            "extraArgs": [
                {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                # An APIService's backend is dialled at its Endpoints' address (there is no
                # kube-proxy to reach a ClusterIP): the custom metrics stand-in of the HPA test.
                {"key": "enable-aggregator-routing", "value": "true"},
            ],
        }
    ],
}


class ClusterError(RuntimeError):
    """The local control plane could not be started, used or stopped."""


@dataclass
class LocalCluster:
    """One local control plane. Its state file lets another process find and stop it."""

    name: str
    workdir: str
    kubeconfig: str
    bin_dir: str
    kubernetes_version: str

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def start(
        cls, name: str, fleet: Path | None = None, *, binaries: Binaries | None = None
    ) -> LocalCluster:
        """Start a fresh control plane (replacing a stale one of the same name)."""
        stale = cls.load(name)
        if stale is not None:
            stale.stop()
        binaries = binaries or ensure_binaries()
        workdir = tempfile.mkdtemp(prefix=f"qmo-{name}-")
        cluster = cls(
            name=name,
            workdir=workdir,
            kubeconfig=str(STATE_DIR / f"{name}.kubeconfig"),
            bin_dir=str(binaries.directory),
            kubernetes_version=binaries.kubernetes_version,
        )
        cluster._save()
        try:
            cluster._create()
            if fleet is not None:
                cluster.add_fleet(fleet)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop every process of this cluster and remove its data; leaves nothing behind."""
        if Path(self.workdir).exists():
            self._kwokctl("delete", "cluster", "--name", self.name, check=False)
        for pid in self._leftover_pids():
            os.kill(pid, signal.SIGKILL)
        _wait_until(lambda: not self._leftover_pids(), timeout=20, what="processes to exit")
        shutil.rmtree(self.workdir, ignore_errors=True)
        Path(self.kubeconfig).unlink(missing_ok=True)
        self._state_file().unlink(missing_ok=True)

    @classmethod
    def load(cls, name: str) -> LocalCluster | None:
        path = STATE_DIR / f"{name}.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    # --- use -----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            "kubectl", "--kubeconfig", self.kubeconfig, *args, input=input, check=check
        )

    def apply(self, objects: list[dict[str, Any]]) -> None:
        docs = yaml.safe_dump_all(objects, sort_keys=False)
        self.kubectl("apply", "--server-side", "--field-manager=qmo-e2e", "-f", "-", input=docs)

    def add_fleet(self, fleet: Path) -> list[str]:
        """Create the fleet's fake GPU nodes and wait until kwok reports them Ready."""
        nodes = build_nodes(load_fleet(fleet))
        # Node status (allocatable GPUs) is kept only when it comes with the create call.
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(nodes, sort_keys=False))
        names = [n["metadata"]["name"] for n in nodes]
        # Generous: kwok marks a node Ready within seconds, but not while another local
        # cluster (a test session, a benchmark) loads the same two cores.
        for name in names:
            self.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=180s")
        return names

    def restart(self, component: str) -> None:
        """Stop one control-plane process (kube-apiserver, etcd, ...) and start it again with
        the same command line, environment and directory, as a crash and a restart would.

        Returns once the API server answers /readyz again.
        """
        pid = self._component_pid(component)
        proc = Path(f"/proc/{pid}")
        argv = [a.decode() for a in proc.joinpath("cmdline").read_bytes().split(b"\0") if a]
        env = dict(
            e.decode().split("=", 1)
            for e in proc.joinpath("environ").read_bytes().split(b"\0")
            if b"=" in e
        )
        cwd = os.readlink(proc / "cwd")
        os.kill(pid, signal.SIGKILL)
        _wait_until(lambda: _has_exited(pid), timeout=20, what=f"{component} to exit")
        if component == "kwok-controller":
            # Each kwok start has a new identity, and a node whose lease another identity
            # holds is left alone until that lease expires (200 s): hand the leases over.
            self.kubectl("delete", "leases", "--all", "--namespace", "kube-node-lease")
        log_path = Path(self.workdir) / f"{component}-restarted.log"
        with log_path.open("ab") as log:
            started = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=log, stderr=log, start_new_session=True
            )

        def ready_or_exited() -> bool:
            return started.poll() is not None or self._api_ready()

        try:
            _wait_until(
                ready_or_exited,
                timeout=180,  # a loaded 2-core machine has taken over 90 s
                what=f"the API server to be ready after restarting {component}",
            )
        except ClusterError as error:
            raise ClusterError(f"{error}; {component} log:\n{_tail(log_path)}") from None
        if started.returncode is not None:  # fail now, with the reason, not after the timeout
            raise ClusterError(
                f"{component} exited with {started.returncode} after its restart:\n"
                + _tail(log_path)
            )

    def _api_ready(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

    def _component_pid(self, component: str) -> int:
        for pid in self._leftover_pids():
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            if Path(argv0).name == component:
                return pid
        raise ClusterError(f"no {component} process in cluster {self.name}")

    def status(self) -> dict[str, Any]:
        ready = self.kubectl("get", "--raw", "/readyz", check=False)
        nodes = self.kubectl("get", "nodes", "-o", "name", check=False).stdout.split()
        return {
            "name": self.name,
            "kubeconfig": self.kubeconfig,
            "kubernetesVersion": self.kubernetes_version,
            "apiserver": ready.stdout.strip() or ready.stderr.strip(),
            "nodes": len(nodes),
            "processes": len(self._leftover_pids()),
        }

    # --- internals -----------------------------------------------------------------------

    def _create(self) -> None:
        config = Path(self.workdir) / "kwokctl.yaml"
        options = {**KWOKCTL_CONFIG["options"], "kubeVersion": f"v{self.kubernetes_version}"}
        config.write_text(yaml.safe_dump({**KWOKCTL_CONFIG, "options": options}))
        bins = Path(self.bin_dir)
        self._kwokctl(
            "create", "cluster", "--name", self.name,
            "--config", str(config), "--config", str(STAGES),
            "--kube-apiserver-binary", str(bins / "kube-apiserver"),
            "--kube-controller-manager-binary", str(bins / "kube-controller-manager"),
            "--kube-scheduler-binary", str(bins / "kube-scheduler"),
            "--kwok-controller-binary", str(bins / "kwok"),
            "--etcd-binary", str(bins / "etcd"),
            "--kubeconfig", self.kubeconfig,
            "--wait", "120s",
        )  # fmt: skip
        # Pods need the default ServiceAccount, which kube-controller-manager creates.
        self.kubectl("wait", "--for=create", "serviceaccount/default", "--timeout=180s")

    def _kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("kwokctl", *args, check=check)

    def _run(
        self, binary: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """One of the pinned binaries, with this cluster's environment."""
        result = subprocess.run(
            [str(Path(self.bin_dir) / binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self._env(),
        )
        if check and result.returncode != 0:
            raise ClusterError(f"{binary} {' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "KWOK_WORKDIR": self.workdir,
            "KWOK_KUBE_VERSION": f"v{self.kubernetes_version}",
        }

    def _leftover_pids(self) -> list[int]:
        """Processes whose command line points into this cluster's workdir."""
        pids = []
        marker = self.workdir.encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and not _has_exited(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def _state_file(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def _save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._state_file().write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")


def _wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    """Poll a cheap local predicate (process table, one kubectl call) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _has_exited(pid: int) -> bool:
    """True once every thread of `pid` is gone, so its sockets and files are closed.

    The leader of a killed Go process shows as a zombie while its other threads are still
    exiting and still hold the listening socket: a restart then fails with "address already in
    use" (seen on a loaded machine). So count the threads, not just the leader's state.
    """
    task = Path(f"/proc/{pid}/task")
    try:
        threads = [t.name for t in task.iterdir()]
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return True
    return state == "Z" and threads == [str(pid)]
