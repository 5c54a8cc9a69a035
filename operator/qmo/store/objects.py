"""Objects on an S3-compatible store: put, get while checking the SHA-256, list, delete.

The client is obstore (the Rust object_store crate): chosen by measurement against boto3 and
s5cmd (docs/benchmarks.md, "Engine store clients"), and because it has no Python
dependencies, where boto3's botocore pins python-dateutil below 3 and the Kubernetes client
qmo ships needs 3 or later. Uploads are multipart with parts in parallel; downloads are ranged
GETs in parallel, consumed in order, so the file is written sequentially and hashed as it
arrives (one pass, memory bounded by `concurrency x part_size`).

Errors become `StoreError` with a CamelCase reason the caller can put into a condition; no
message carries a credential (the client's own messages name URLs, never keys).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qmo.store.checksums import PART_BYTES
from qmo.store.location import (
    ACCESS_KEY_ENV,
    SECRET_KEY_ENV,
    SESSION_TOKEN_ENV,
    S3Location,
)

PART_SIZE = PART_BYTES  # a manifest's parts are the ranges a fetch streams
CONCURRENCY = 8
STREAM_CHUNK = 64 * 1024  # at least this much per write (hyper frames are merged up to it)
HASH_BUFFER = 8 * 1024 * 1024


class StoreError(Exception):
    """A store operation failed; `reason` is CamelCase for conditions and Events."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ChecksumMismatch(StoreError):
    def __init__(self, message: str) -> None:
        super().__init__("ArtifactCorrupt", message)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


def _obstore() -> Any:
    try:
        return importlib.import_module("obstore")
    except ImportError as err:  # only in an image built without the store extra
        raise StoreError("StoreClientMissing", "the S3 store needs obstore in this image") from err


def connect(location: S3Location, env: Mapping[str, str]) -> ObjectStore:
    """A client for `location`: keys from the AWS variables in `env` when present, else the
    pod's workload identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, read by the client)."""
    _obstore()
    obstore_store: Any = importlib.import_module("obstore.store")
    config: dict[str, Any] = {
        "region": location.region,
        "virtual_hosted_style_request": not location.path_style,
    }
    if location.endpoint:
        config["endpoint"] = location.endpoint
    if env.get(ACCESS_KEY_ENV) and env.get(SECRET_KEY_ENV):
        config["access_key_id"] = env[ACCESS_KEY_ENV]
        config["secret_access_key"] = env[SECRET_KEY_ENV]
        if env.get(SESSION_TOKEN_ENV):
            config["session_token"] = env[SESSION_TOKEN_ENV]
    options: dict[str, Any] = {"timeout": "600s", "connect_timeout": "10s"}
    if location.endpoint and location.endpoint.startswith("http://"):
        options["allow_http"] = True
    if location.ca_bundle:
        options["root_certificate"] = location.ca_bundle
    # Transient errors (5xx, resets) are retried by the client; an unreachable server gives up
    # within about a minute, so the pod's own restart (with its reason) takes over.
    retry = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=60),
        "backoff": {
            "init_backoff": timedelta(milliseconds=200),
            "max_backoff": timedelta(seconds=10),
            "base": 2,
        },
    }
    try:
        raw = obstore_store.S3Store(
            location.bucket, config=config, client_options=options, retry_config=retry
        )
    except Exception as err:
        raise StoreError("StoreConfigInvalid", f"{location.uri()}: {_brief(err)}") from err
    return ObjectStore(raw, location)


class ObjectStore:
    """One bucket, addressed by full object keys (the location's prefix included by callers)."""

    def __init__(self, raw: Any, location: S3Location) -> None:
        self._raw = raw
        self._ob = _obstore()
        self.location = location

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as err:
            raise _store_error(what, self.location, err) from err

    def head(self, key: str) -> ObjectInfo | None:
        try:
            meta = self._ob.head(self._raw, key)
        except Exception as err:
            if _is_not_found(err):
                return None
            raise _store_error(f"head {key}", self.location, err) from err
        return ObjectInfo(meta["path"], int(meta["size"]), meta["last_modified"])

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return bytes(self._ob.get(self._raw, key).bytes())
        except Exception as err:
            if _is_not_found(err):
                return None
            raise _store_error(f"get {key}", self.location, err) from err

    def read_json(self, key: str) -> dict[str, Any] | None:
        data = self.read_bytes(key)
        if data is None:
            return None
        try:
            parsed = json.loads(data)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(f"put {key}", lambda: self._ob.put(self._raw, key, data))

    def write_json(self, key: str, data: Mapping[str, Any]) -> None:
        self.write_bytes(key, (json.dumps(data, indent=2) + "\n").encode("utf-8"))

    def upload_file(
        self, path: Path, key: str, *, part_size: int = PART_SIZE, concurrency: int = CONCURRENCY
    ) -> None:
        """Multipart for large files (parts in parallel); an upload that dies leaves no object."""

        def put() -> None:
            with path.open("rb") as data:
                self._ob.put(
                    self._raw, key, data, chunk_size=part_size, max_concurrency=concurrency
                )

        self._call(f"put {key}", put)

    def download_file(
        self,
        key: str,
        target: Path,
        *,
        size: int | None = None,
        part_size: int = PART_SIZE,
        concurrency: int = CONCURRENCY,
        part_sha256: Sequence[str] = (),
    ) -> str | None:
        """Write object `key` to `target`; returns the SHA-256 of what landed there, or None
        when `part_sha256` (each `part_size` part's SHA-256, from the manifest) was given:
        then each worker checks its own part as it streams it, in parallel, and a part that
        differs raises ChecksumMismatch.

        Workers stream ranges of `part_size` in parallel and write each chunk at its offset;
        this thread hashes the file in order as parts complete, reading them back from the
        page cache into one reused buffer. Streaming in small chunks, not whole ranges into
        fresh buffers, is what keeps page faults (and system time) near s5cmd's."""
        if size is None:
            info = self.head(key)
            if info is None:
                raise StoreError("ArtifactIncomplete", f"{self.location.uri(key)} does not exist")
            size = info.size
        if part_sha256 and len(part_sha256) != -(-size // part_size):
            raise ChecksumMismatch(f"{key}: {len(part_sha256)} part hashes for {size} bytes")
        target.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        back = os.open(target, os.O_RDONLY)
        try:
            parts = _Parts()

            def fetch(start: int, end: int) -> None:
                try:
                    digest = hashlib.sha256() if part_sha256 else None
                    written = self._call(
                        f"get {key}", lambda: self._write_range(key, out, start, end, digest)
                    )
                    if written != end - start:
                        raise StoreError(
                            "ArtifactCorrupt",
                            f"{key}: got {written} bytes at {start}, not {end - start}",
                        )
                    expected = part_sha256[start // part_size] if part_sha256 else None
                    if digest is not None and digest.hexdigest() != expected:
                        raise ChecksumMismatch(
                            f"{key}: bytes {start}-{end} have SHA-256 {digest.hexdigest()[:12]},"
                            f" the manifest's are {str(expected)[:12]}"
                        )
                finally:
                    parts.done(start)  # or failed: the hashing thread raises its error

            with ThreadPoolExecutor(concurrency) as pool:
                starts = range(0, size, part_size)
                futures = [pool.submit(fetch, s, min(s + part_size, size)) for s in starts]
                try:
                    if part_sha256:  # checked by the workers: wait for them
                        for future in futures:
                            future.result()
                        whole = None
                    else:
                        whole = _hash_in_order(back, starts, size, part_size, parts, futures)
                finally:
                    for future in futures:
                        future.cancel()
        finally:
            os.close(out)
            os.close(back)
        return whole

    def _write_range(
        self, key: str, fd: int, start: int, end: int, digest: Any | None = None
    ) -> int:
        position = start
        stream = self._ob.get(self._raw, key, options={"range": (start, end)})
        for chunk in stream.stream(min_chunk_size=STREAM_CHUNK):
            view = memoryview(chunk)
            if digest is not None:
                digest.update(view)
            written = 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], position + written)
            position += len(view)
        return position - start

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (a '/'-ended key prefix)."""
        try:
            for batch in self._ob.list(self._raw, prefix, chunk_size=1000):
                for meta in batch:
                    yield ObjectInfo(meta["path"], int(meta["size"]), meta["last_modified"])
        except Exception as err:
            raise _store_error(f"list {prefix}", self.location, err) from err

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            batch = list(keys)
            self._call(f"delete {len(batch)} objects", lambda: self._ob.delete(self._raw, batch))


class _Parts:
    """Which parts (by start offset) are on disk; the hashing thread waits on it."""

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._changed = threading.Condition()

    def done(self, start: int) -> None:
        with self._changed:
            self._done.add(start)
            self._changed.notify_all()

    def wait(self, start: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: start in self._done)


def _hash_in_order(
    fd: int,
    starts: range,
    size: int,
    part_size: int,
    parts: _Parts,
    futures: Sequence[Future[None]],
) -> str:
    """SHA-256 of the file at `fd`, read in order as each part is written; a part's failure
    (its future's exception) is raised here."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_BUFFER)
    view = memoryview(buffer)
    for index, start in enumerate(starts):
        future = futures[index]
        parts.wait(start)
        future.result()  # raises the part's error
        end = min(start + part_size, size)
        position = start
        while position < end:
            read = os.preadv(fd, [view[: min(len(buffer), end - position)]], position)
            if read <= 0:
                raise StoreError("ArtifactCorrupt", f"short read at {position}")
            digest.update(view[:read])
            position += read
    return digest.hexdigest()


def _is_not_found(err: Exception) -> bool:
    return type(err).__name__ in ("NotFoundError", "FileNotFoundError")


def _brief(err: Exception) -> str:
    """The client's message, first line, cut short: it names URLs and HTTP statuses only."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]


def _store_error(what: str, location: S3Location, err: Exception) -> StoreError:
    if isinstance(err, StoreError):
        return err
    name = type(err).__name__
    text = str(err)
    where = f"s3://{location.bucket} ({location.endpoint or location.region})"
    if name in ("PermissionDeniedError", "UnauthenticatedError") or any(
        marker in text
        for marker in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403")
    ):
        return StoreError(
            "StoreAccessDenied",
            f"{where} refused {what}: the credentials are wrong or lack the right ({_brief(err)})",
        )
    if "NoSuchBucket" in text:
        return StoreError("StoreBucketMissing", f"{where}: the bucket does not exist")
    if any(m in text.lower() for m in ("connect", "timed out", "dns error", "connection refused")):
        return StoreError("StoreUnreachable", f"{where} could not be reached for {what}")
    if _is_not_found(err):
        return StoreError("ArtifactIncomplete", f"{where}: {what}: no such object")
    return StoreError("StoreError", f"{where}: {what} failed: {_brief(err)}")
