"""A real S3-compatible server on loopback for the engine-store tests: Versity's S3 gateway.

versitygw (github.com/versity/versitygw, Apache-2.0) serves the S3 API over a POSIX directory:
SigV4 authentication, multipart uploads, ranged GETs, ListObjectsV2, DeleteObjects. It is
built by e2e/build-binaries.sh from the Go module proxy into the binaries' cache, like the
Kubernetes binaries (one go install, no replace directives; SeaweedFS, the other candidate,
took 441 s cold against versitygw's figure in docs/benchmarks.md). One process, one port, keys
on its command line: a test starts one in a second.

`StoreServer.start(dir)` picks a free port, starts it with fresh root keys, waits until it
answers, and stops it on exit; `stop()`/`resume()` take it down and back on the same port (the
fault tests). `create_bucket` signs a CreateBucket itself (SigV4), so no S3 SDK is needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from e2e.cluster.binaries import default_bin_dir

BINARY = "versitygw"
REGION = "us-east-1"


def store_binary(name: str = BINARY) -> Path:
    return default_bin_dir() / name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StoreServer:
    root: Path
    port: int
    access_key: str
    secret_key: str
    kind: str = BINARY
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(os.devnull))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextmanager
    def start(cls, root: Path) -> Iterator[StoreServer]:
        root.mkdir(parents=True, exist_ok=True)
        server = cls(
            root=root,
            port=free_port(),
            access_key="qmo" + secrets.token_hex(6),
            secret_key=secrets.token_hex(20),
            log=root.parent / f"{root.name}.log",
        )
        server.resume()
        try:
            yield server
        finally:
            server.stop()

    def resume(self) -> None:
        binary = store_binary()
        if not binary.exists():
            raise FileNotFoundError(f"{binary} is missing: run `make binaries`")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "--access", self.access_key,
            "--secret", self.secret_key,
            "--region", REGION,
            "--port", f"127.0.0.1:{self.port}",
            "--quiet",
            "posix",
            str(data),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_up()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def _wait_until_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{BINARY} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)  # polling a port coming up; there is nothing to watch
        raise TimeoutError(f"{BINARY} did not listen on {self.port} within {timeout}s")

    def create_bucket(self, bucket: str) -> None:
        request = signed_request(
            "PUT", f"{self.endpoint}/{bucket}", self.access_key, self.secret_key
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as err:
            if b"BucketAlreadyOwnedByYou" not in err.read():
                raise

    def object_path(self, bucket: str, key: str) -> Path:
        """Where the server keeps an object (the fault tests corrupt one there)."""
        return self.root / "data" / bucket / key

    def wipe(self) -> None:
        shutil.rmtree(self.root / "data", ignore_errors=True)


def signed_request(
    method: str, url: str, access_key: str, secret_key: str, body: bytes = b""
) -> urllib.request.Request:
    """An AWS Signature Version 4 request (path-style URL, no query string)."""
    now = dt.datetime.now(dt.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = url.split("/")[2]
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    request = urllib.request.Request(url, data=body or None, method=method)
    for name, value in {**headers, "authorization": authorization}.items():
        if name != "host":
            request.add_header(name, value)
    return request
