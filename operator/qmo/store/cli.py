"""`qmo-store`: the engine store's steps inside pods.

    qmo-store fetch --key KEY --cache DIR --max-bytes N [--hold]   (serving pods' sidecar)
    qmo-store get --into DIR --path PATH [--path ...]      (build and eval pods' init container)
    qmo-store put --from DIR --to PATH                     (eval pods: the per-item outcomes)
    qmo-store gc [--root DIR] --keep-file FILE [--retention-hours H] [--delete]

The bucket comes from the environment (qmo.store.location), credentials from the standard AWS
variables or the pod's workload identity. `fetch` retries a store it cannot reach (with
backoff, a few minutes in all) and ends, on failure, with a termination message
`{"reason": ..., "message": ...}` that the operator shows on the variant; the kubelet then
restarts it with its own backoff. With --hold it then keeps the artifact locked in the cache
until SIGTERM (the pod's end), so no eviction takes it from under a server that restarts.
Exit codes: 0 done, 1 failed (retriable), 2 bad usage.
`gc` without --delete only reports what it would delete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from qmo import __version__
from qmo.argparsing import show_defaults
from qmo.store import cache, gc
from qmo.store.artifacts import ArtifactStore, FilesystemArtifacts, S3Artifacts
from qmo.store.location import S3Location
from qmo.store.objects import ChecksumMismatch, StoreError, connect

TERMINATION_LOG = "/dev/termination-log"
RETRIABLE = ("StoreUnreachable", "StoreError", "ArtifactCorrupt")
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A flag or a file the command cannot use: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmo-store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"qmo-store {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="fetch an artifact into the node cache")
    fetch.add_argument("--key", required=True, help="the artifact's cache key")
    fetch.add_argument("--cache", type=Path, required=True, help="the cache directory")
    fetch.add_argument("--max-bytes", type=int, required=True, help="the cache's size limit")
    fetch.add_argument("--attempts", type=int, default=6, help="tries before giving up")
    fetch.add_argument(
        "--hold", action="store_true", help="then keep it locked in the cache until SIGTERM"
    )
    fetch.add_argument("--termination-log", type=Path, default=Path(TERMINATION_LOG))
    get = commands.add_parser("get", help="copy store paths (files or directories) locally")
    get.add_argument("--into", type=Path, required=True, help="local directory (the /store)")
    get.add_argument("--path", action="append", default=[], help="a path on the store")
    get.add_argument("--termination-log", type=Path, default=Path(TERMINATION_LOG))
    put = commands.add_parser("put", help="upload a local directory's files to a store path")
    put.add_argument("--from", dest="source", type=Path, required=True, help="local directory")
    put.add_argument("--to", required=True, help="the path on the store")
    put.add_argument("--termination-log", type=Path, default=Path(TERMINATION_LOG))
    collect = commands.add_parser("gc", help="delete artifacts no model needs any more")
    collect.add_argument("--root", type=Path, help="the claim's mount (unset: the bucket)")
    collect.add_argument("--keep-file", type=Path, required=True, help="cache keys to keep")
    collect.add_argument("--retention-hours", type=float, default=168.0)
    collect.add_argument("--delete", action="store_true", help="delete (default: report)")
    collect.add_argument(
        "--termination-log", type=Path, help="also write the summary there (GC Jobs)"
    )
    for sub in (fetch, get, put, collect):
        show_defaults(sub)
    return show_defaults(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ
    try:
        if args.command == "fetch":
            return _fetch(args, env)
        if args.command == "get":
            return _get(args, env)
        if args.command == "put":
            return _put(args, env)
        return _gc(args, env)
    except UsageError as err:
        print(f"qmo-store {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as err:
        print(f"qmo-store {args.command}: {err.reason}: {err}", file=sys.stderr)
        _terminate(getattr(args, "termination_log", None), err.reason, str(err))
        return EXIT_FAILED
    except OSError as err:  # the local disk: the cache or the directory written to
        message = f"{err.filename or 'a local file'}: {err.strerror or err}"
        print(f"qmo-store {args.command}: LocalWriteFailed: {message}", file=sys.stderr)
        _terminate(getattr(args, "termination_log", None), "LocalWriteFailed", message)
        return EXIT_FAILED


def _bucket(env: Mapping[str, str]) -> S3Artifacts:
    location = S3Location.from_env(env)
    if location is None:
        raise StoreError("StoreConfigInvalid", "no bucket in the environment (QMO_STORE_S3_*)")
    return S3Artifacts(connect(location, env))


def _fetch(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    artifacts = _bucket(env)
    for attempt in range(1, args.attempts + 1):
        try:
            outcome = cache.fetch(
                artifacts, args.key, args.cache, max_bytes=args.max_bytes, hold=args.hold
            )
        except StoreError as err:
            if err.reason not in RETRIABLE or attempt == args.attempts:
                raise
            wait = min(60.0, 2.0**attempt)
            kind = "corrupt, fetching again" if isinstance(err, ChecksumMismatch) else "retrying"
            print(f"fetch {args.key}: {err.reason}: {err}; {kind} in {wait:.0f}s", file=sys.stderr)
            sleep(wait)
            continue
        verb = "reused from the node cache" if outcome.hit else "fetched and verified"
        rate = outcome.bytes / outcome.seconds / 2**20 if outcome.seconds > 0 else 0.0
        print(
            f"fetch {args.key}: {verb}: {outcome.bytes} bytes in {outcome.seconds:.1f}s"
            + (f" ({rate:.0f} MiB/s)" if not outcome.hit else ""),
            flush=True,
        )
        if outcome.held is not None:
            _hold_until_terminated(args.key, outcome.held)
        return 0
    return EXIT_FAILED  # not reached: the last attempt raises


def _hold_until_terminated(key: str, held: int) -> None:
    """Keep the artifact's shared lock (the open descriptor) until SIGTERM or SIGINT."""
    # A handler, not a blocked mask: the store client's threads would take the signal and
    # die of it. The handler runs in this thread, at most a second after the signal.
    ended = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: ended.set())
    print(f"fetch {key}: held in the node cache until the pod ends", flush=True)
    while not ended.wait(1.0):
        pass
    os.close(held)


def _get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    artifacts = _bucket(env)
    objects, location = artifacts.objects, artifacts.location
    for path in args.path:
        relative = path.strip("/")
        if ".." in Path(relative).parts:
            raise StoreError("StorePathInvalid", f"{path!r} leaves the store")
        single = objects.head(location.key(relative))
        found = [single] if single is not None else list(objects.list(location.key(relative) + "/"))
        if not found:
            raise StoreError("StorePathMissing", f"{location.uri(relative)} holds nothing")
        root = location.key() + "/" if location.prefix else ""
        for info in found:
            target = args.into / info.key[len(root) :]
            objects.download_file(info.key, target, size=info.size)
        print(f"get {location.uri(relative)}: {len(found)} object(s)")
    return 0


def _put(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Every file under --from, to the same relative path under --to (none: nothing to do)."""
    artifacts = _bucket(env)
    target = args.to.strip("/")
    if ".." in Path(target).parts:
        raise StoreError("StorePathInvalid", f"{args.to!r} leaves the store")
    files = sorted(p for p in args.source.rglob("*") if p.is_file()) if args.source.is_dir() else []
    for path in files:
        key = artifacts.location.key(target, path.relative_to(args.source).as_posix())
        artifacts.objects.upload_file(path, key)
    print(f"put {artifacts.location.uri(target)}: {len(files)} file(s)")
    return 0


def _gc(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    store: ArtifactStore = FilesystemArtifacts(args.root) if args.root else _bucket(env)
    try:
        text = args.keep_file.read_text()
    except OSError as err:
        raise UsageError(f"cannot read the keep list {args.keep_file}: {err.strerror}") from err
    keep = {line.strip() for line in text.splitlines() if line.strip()}
    result = gc.collect(
        store,
        keep,
        now=datetime.now(UTC),
        retention=timedelta(hours=args.retention_hours),
        delete=args.delete,
    )
    summary = result.summary()
    print(json.dumps(summary, sort_keys=True))
    if args.termination_log is not None:  # Kubernetes keeps 4096 bytes of it: counts first
        short = {**summary, "collectable": summary["collectable"][:20]}
        short["collected"] = len(result.plan.collect) - len(result.errors) if args.delete else 0
        with contextlib.suppress(OSError):
            args.termination_log.write_text(json.dumps(short, sort_keys=True)[:4000], "utf-8")
    return 0


def _terminate(path: Path | None, reason: str, message: str) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):  # not in a pod
        path.write_text(json.dumps({"reason": reason, "message": message[:2000]}), "utf-8")


if __name__ == "__main__":
    sys.exit(main())
