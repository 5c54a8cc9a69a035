"""S3 clients side by side on one local S3-compatible server: upload and download of one file.

Why it exists: the engine store's Python client was chosen by these numbers, and the serving
pods' fetch step is held to s5cmd's time by them (docs/benchmarks.md, "The engine store").
Each client runs in a child process of its own under GNU time, which reports its peak RSS;
every client moves the same file to and from the same server in the same run, in turns, and
the file read back is checked against the original's SHA-256. The `qmo` row is qmo's own
path: `put` publishes the file as an artifact (the file, then its manifest), `get` is a
serving pod's cold start (into an empty node cache, every byte checked against the
manifest's SHA-256 as it arrives), `warm` a second start from the node cache.

    .venv/bin/python -m benchmarks.store_clients --size-gib 3 --rounds 3 \
        --boto3-python /path/to/venv-with-boto3/bin/python

needs versitygw (`make binaries`) and s5cmd (`e2e/build-store-peers.sh`), built from the Go
module proxy into the binaries' cache. Not run in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.store_server import StoreServer, store_binary

BUCKET = "bench"
CHUNK = 64 * 1024 * 1024
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of each client
CONCURRENCY = 8

# Each snippet reads ENDPOINT, KEY_ID, SECRET, BUCKET, KEY, FILE from the environment.
_BOTO3 = """
import os, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
c = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=os.environ["KEY_ID"], aws_secret_access_key=os.environ["SECRET"],
    config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
t = TransferConfig(multipart_threshold=64<<20, multipart_chunksize=64<<20, max_concurrency=8)
if os.environ["OP"] == "put":
    c.upload_file(os.environ["FILE"], os.environ["BUCKET"], os.environ["KEY"], Config=t)
else:
    c.download_file(os.environ["BUCKET"], os.environ["KEY"], os.environ["FILE"], Config=t)
"""
_OBSTORE = """
import os, obstore
from obstore.store import S3Store
s = S3Store(os.environ["BUCKET"], endpoint=os.environ["ENDPOINT"], region="us-east-1",
    access_key_id=os.environ["KEY_ID"], secret_access_key=os.environ["SECRET"],
    virtual_hosted_style_request=False, client_options={"allow_http": True})
if os.environ["OP"] == "put":
    with open(os.environ["FILE"], "rb") as f:
        obstore.put(s, os.environ["KEY"], f, chunk_size=64<<20, max_concurrency=8)
else:
    size = obstore.head(s, os.environ["KEY"])["size"]
    step = 64 << 20
    starts = list(range(0, size, step))
    ends = [min(x + step, size) for x in starts]
    with open(os.environ["FILE"], "wb") as f:
        f.truncate(size)
        for i in range(0, len(starts), 8):
            parts = obstore.get_ranges(s, os.environ["KEY"], starts=starts[i:i+8], ends=ends[i:i+8])
            for start, part in zip(starts[i:i+8], parts):
                f.seek(start); f.write(memoryview(part))
"""
# qmo's own store code as the builder publishes (files, then the manifest) and as a serving
# pod's fetch step reads: into the node cache, every byte checked against the manifest's
# SHA-256; "get" empties the cache first (a cold start), "warm" starts from it.
_QMO = """
import os, json, shutil
from pathlib import Path
from qmo.store.artifacts import S3Artifacts
from qmo.store.cache import fetch
from qmo.store.checksums import PART_BYTES, sha256_with_parts
from qmo.store.location import S3Location
from qmo.store.objects import connect
loc = S3Location(bucket=os.environ["BUCKET"], endpoint=os.environ["ENDPOINT"], path_style=True,
    prefix=os.environ["KEY"])
store = S3Artifacts(connect(loc, env=os.environ), log=lambda _: None)
blob = Path(os.environ["FILE"])
cache = Path(os.environ["CACHE"])
if os.environ["OP"] == "put":
    whole, parts = sha256_with_parts(blob)
    manifest = {"complete": True, "cacheKey": "bench", "totalBytes": blob.stat().st_size,
        "partBytes": PART_BYTES, "files": [{"path": "blob.bin", "bytes": blob.stat().st_size,
        "sha256": whole, "partSha256": list(parts)}]}
    store.publish(blob.parent, "bench", manifest)
else:
    if os.environ["OP"] == "get":
        shutil.rmtree(cache, ignore_errors=True)
    done = fetch(store, "bench", cache, max_bytes=1 << 40, log=lambda _: None)
    assert done.hit == (os.environ["OP"] == "warm")
"""
SNIPPETS = {"boto3": _BOTO3, "obstore": _OBSTORE, "qmo": _QMO}


@dataclass
class Timing:
    client: str
    op: str
    seconds: float
    peak_rss_mib: float


def sha256_file(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; raises if it fails. GNU time reports
    the RSS: a child forked from this process would start with this process's pages."""
    report = Path(tempfile.mkstemp(prefix="qmo-rss-")[1])
    timed = [TIME, "-f", "%M", "-o", str(report)] if os.path.exists(TIME) else []
    start = time.monotonic()
    done = subprocess.run([*timed, *argv], env=env, check=False)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed with {done.returncode}")
    said = report.read_text().strip().splitlines()
    report.unlink()
    return seconds, float(said[-1]) / 1024 if said else float("nan")


def client_argv(
    client: str, op: str, key: str, file: Path, s5cmd: Path | None, python: dict[str, str]
) -> list[str]:
    if client == "s5cmd":
        assert s5cmd is not None
        args = [str(s5cmd), "--endpoint-url", "{endpoint}", "--numworkers", str(CONCURRENCY)]
        url = f"s3://{BUCKET}/{key}"
        transfer = ["cp", "--concurrency", str(CONCURRENCY), "--part-size", "64"]
        return [*args, *transfer, *((str(file), url) if op == "put" else (url, str(file)))]
    return [python.get(client, sys.executable), "-c", SNIPPETS[client]]


def make_file(path: Path, size: int) -> str:
    """A file of `size` random-looking bytes (not compressible), and its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: min(CHUNK, size - written)]
            # Vary each block so no layer can deduplicate them.
            piece = written.to_bytes(8, "little") + piece[8:] if len(piece) > 8 else piece
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def measure(
    server: StoreServer,
    clients: list[str],
    file: Path,
    digest: str,
    rounds: int,
    s5cmd: Path | None,
    python: dict[str, str],
) -> list[Timing]:
    env = {
        **os.environ,
        "ENDPOINT": server.endpoint,
        "KEY_ID": server.access_key,
        "SECRET": server.secret_key,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
        "BUCKET": BUCKET,
    }
    timings = []
    back = file.with_name("back.bin")
    cache = file.with_name("cache")
    for round_ in range(rounds):
        for client in clients:  # in turns, so a slow phase of the machine hits all alike
            key = f"{client}/{round_}/blob.bin"
            ops = [("put", file), ("get", back)] + ([("warm", back)] if client == "qmo" else [])
            for op, path in ops:
                argv = [
                    a.replace("{endpoint}", server.endpoint)
                    for a in client_argv(client, op, key, path, s5cmd, python)
                ]
                child = {**env, "OP": op, "KEY": key, "FILE": str(path), "CACHE": str(cache)}
                seconds, rss = run_child(argv, {**child, "SHA": digest})
                timings.append(Timing(client, op, seconds, rss))
                print(f"{client} {op} round {round_}: {seconds:.2f}s {rss:.0f} MiB", flush=True)
            read_back = cache / "bench" / "blob.bin" if client == "qmo" else back
            if sha256_file(read_back) != digest:
                raise RuntimeError(f"{client}: the file read back differs from the one written")
            read_back.unlink()
    return timings


def measure_fetch(
    server: StoreServer, file: Path, digest: str, rounds: int, s5cmd: Path
) -> list[Timing]:
    """One artifact (the file, then its manifest), published once by qmo; then, in turns on
    that same object: s5cmd's download, qmo's cold fetch into an empty node cache (every byte
    checked against the manifest), and qmo's warm start from that cache."""
    env = {
        **os.environ,
        "ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
        "BUCKET": BUCKET,
        "KEY": "fetch",
        "FILE": str(file),
        "CACHE": str(file.with_name("cache")),
        "SHA": digest,
    }
    run_child([sys.executable, "-c", _QMO], {**env, "OP": "put"})
    back = file.with_name("back.bin")
    url = f"s3://{BUCKET}/fetch/artifacts/bench/blob.bin"
    steps = {
        "s5cmd get": [str(s5cmd), "--endpoint-url", server.endpoint, "--numworkers",
                      str(CONCURRENCY), "cp", "--concurrency", str(CONCURRENCY), "--part-size",
                      "64", url, str(back)],
        "qmo get": [sys.executable, "-c", _QMO],
        "qmo warm": [sys.executable, "-c", _QMO],
    }  # fmt: skip
    timings = []
    for round_ in range(rounds):
        for name, argv in steps.items():
            client, op = name.split()
            seconds, rss = run_child(argv, {**env, "OP": op})
            timings.append(Timing(client, op, seconds, rss))
            print(f"{name} round {round_}: {seconds:.2f}s {rss:.0f} MiB", flush=True)
        if (
            sha256_file(back) != digest
            or sha256_file(file.with_name("cache") / "bench" / "blob.bin") != digest
        ):
            raise RuntimeError("a file read back differs from the one written")
        back.unlink()
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", nargs="+", default=["boto3", "obstore", "s5cmd", "qmo"])
    parser.add_argument("--s5cmd", type=Path, default=store_binary("s5cmd"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="only qmo's fetch against s5cmd on one published artifact, in turns",
    )
    parser.add_argument(
        "--boto3-python",
        default=sys.executable,
        help="a Python with boto3 (qmo's own environment has none: see qmo.store.objects)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="qmo-store-bench-", dir=args.workdir))
    try:
        size = int(args.size_gib * (1 << 30))
        file = work / "blob.bin"
        digest = make_file(file, size)
        with StoreServer.start(work / "server") as server:
            server.create_bucket(BUCKET)
            if args.fetch:
                args.clients = ["s5cmd", "qmo"]
                timings = measure_fetch(server, file, digest, args.rounds, args.s5cmd)
            else:
                timings = measure(
                    server,
                    args.clients,
                    file,
                    digest,
                    args.rounds,
                    args.s5cmd,
                    {"boto3": args.boto3_python},
                )
        print(f"file: {size / (1 << 30):.2f} GiB, {args.rounds} rounds, server {server.kind}")
        print("| client | op | median s | min s | max s | MiB/s (median) | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for client in args.clients:
            for op in dict.fromkeys(t.op for t in timings if t.client == client):
                rows = sorted(t.seconds for t in timings if t.client == client and t.op == op)
                rss = max(t.peak_rss_mib for t in timings if t.client == client and t.op == op)
                median = rows[len(rows) // 2]
                mibs = size / (1 << 20) / median
                print(
                    f"| {client} | {op} | {median:.2f} | {rows[0]:.2f} | {rows[-1]:.2f} "
                    f"| {mibs:.0f} | {rss:.0f} |"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
