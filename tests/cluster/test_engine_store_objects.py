"""The engine store on a real S3-compatible server (versitygw on loopback, built by
`make binaries`): publishing, the node cache, faults, garbage collection.

These need the server binary, not the control plane; they sit in the cluster tier because
that tier is the one with the binaries. The operator's side (manifests, conditions) is in
test_engine_store.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from qmo.builder import pipeline
from qmo.builder.publishers import ObjectStorePublisher, StoreUnavailable
from qmo.builder.recipes import recipe_for
from qmo.config import OperatorConfig, S3Defaults, StoreGc
from qmo.controller import store_gc
from qmo.store import cache, cli, gc
from qmo.store.artifacts import FilesystemArtifacts, S3Artifacts
from qmo.store.checksums import PART_BYTES, sha256_with_parts
from qmo.store.location import MANIFEST, S3Location
from qmo.store.objects import ChecksumMismatch, StoreError, connect
from tests.support.build_requests import H100, a_checkpoint, a_request
from tests.support.store_server import StoreServer

BUCKET = "qmo-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    with StoreServer.start(tmp_path_factory.mktemp("s3") / "server") as running:
        running.create_bucket(BUCKET)
        yield running


@pytest.fixture
def location(server: StoreServer, request: pytest.FixtureRequest) -> S3Location:
    """A prefix of its own per test, so tests share the server but not their objects."""
    return S3Location(
        bucket=BUCKET, prefix=f"t/{request.node.name[:40]}", endpoint=server.endpoint,
        path_style=True,
    )  # fmt: skip


def _env(server: StoreServer, secret: str | None = None) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": secret or server.secret_key,
    }


@pytest.fixture
def store(server: StoreServer, location: S3Location) -> S3Artifacts:
    return S3Artifacts(connect(location, _env(server)), log=lambda _: None)


def _build(
    tmp_path: Path, store: S3Artifacts, key: str = "k" * 16, shards: int = 2
) -> pipeline.Outcome:
    """A bf16 build (a copy of the checkpoint: no GPU stack) published to the bucket."""
    src = a_checkpoint(tmp_path / f"src-{key}", shards=shards)
    request = a_request().precision("bf16").source(str(src)).output(store.location.uri(key)).build()
    request = request.model_copy(update={"cache_key": key})
    options = pipeline.BuildOptions(
        download_dir=tmp_path / "dl",
        store_root=tmp_path,
        log=lambda _: None,
        publisher=ObjectStorePublisher(store, key, tmp_path / "scratch", lambda _: None),
    )
    return pipeline.build(request, recipe_for(request), gpus=[H100], env={}, options=options)


def test_a_build_publishes_every_file_then_the_manifest(tmp_path: Path, store: S3Artifacts) -> None:
    outcome = _build(tmp_path, store)
    assert outcome.artifact == store.location.uri("artifacts", "k" * 16)
    manifest = store.finished_manifest("k" * 16)
    assert manifest is not None
    assert manifest["complete"] is True
    listed = {
        i.key.rsplit("artifacts/" + "k" * 16 + "/", 1)[1]
        for i in store.objects.list(store.location.artifact_key("k" * 16) + "/")
    }
    assert listed == {f["path"] for f in manifest["files"]} | {MANIFEST}
    assert not list((tmp_path / "scratch").glob("*")), "the local staging is removed"


def test_a_second_build_of_a_published_key_skips(tmp_path: Path, store: S3Artifacts) -> None:
    first = _build(tmp_path, store)
    second = _build(tmp_path, store)
    assert second.reused
    assert second.manifest == first.manifest


def test_files_without_a_manifest_are_no_artifact_and_the_retried_build_completes(
    tmp_path: Path, store: S3Artifacts
) -> None:
    """An upload killed half-way: some files there, no manifest."""
    key = "h" * 16
    store.objects.write_bytes(store.location.artifact_key(key, "checkpoint/config.json"), b"{}")
    assert store.finished_manifest(key) is None
    with pytest.raises(StoreError) as refused:
        store.fetch(key, tmp_path / "nowhere")
    assert refused.value.reason == "ArtifactIncomplete"
    assert [a.complete for a in store.inventory()] == [False]
    outcome = _build(tmp_path, store, key)
    assert not outcome.reused
    assert store.finished_manifest(key) is not None


def test_wrong_credentials_are_a_clear_reason(
    tmp_path: Path, server: StoreServer, location: S3Location
) -> None:
    wrong = S3Artifacts(connect(location, _env(server, secret="not-the-secret")))
    with pytest.raises(StoreError) as denied:
        wrong.finished_manifest("k" * 16)
    assert denied.value.reason == "StoreAccessDenied"
    assert "not-the-secret" not in str(denied.value)
    with pytest.raises(StoreUnavailable) as failed:
        _build(tmp_path, wrong)
    assert failed.value.reason == "StoreAccessDenied"


def test_a_fetch_verifies_and_a_second_start_reuses_the_node_cache(
    tmp_path: Path, server: StoreServer, store: S3Artifacts
) -> None:
    _build(tmp_path, store)
    root = tmp_path / "cache"
    first = cache.fetch(store, "k" * 16, root, max_bytes=1 << 30)
    assert not first.hit
    assert first.bytes > 0
    manifest = json.loads((first.path / MANIFEST).read_text())
    for entry in manifest["files"]:
        assert (first.path / entry["path"]).stat().st_size == entry["bytes"]
    server.stop()  # a second pod on the node, or a restart: no store needed
    try:
        second = cache.fetch(store, "k" * 16, root, max_bytes=1 << 30)
    finally:
        server.resume()
    assert second.hit
    assert second.path == first.path


def test_a_corrupted_object_is_detected_and_nothing_is_left_to_serve(
    tmp_path: Path, server: StoreServer, store: S3Artifacts
) -> None:
    _build(tmp_path, store)
    manifest = store.finished_manifest("k" * 16)
    assert manifest is not None
    shard = next(f for f in manifest["files"] if f["path"].endswith(".safetensors"))
    on_disk = server.object_path(BUCKET, store.location.artifact_key("k" * 16, shard["path"]))
    data = bytearray(on_disk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    on_disk.write_bytes(bytes(data))
    root = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch) as corrupt:
        cache.fetch(store, "k" * 16, root, max_bytes=1 << 30)
    assert corrupt.value.reason == "ArtifactCorrupt"
    assert shard["path"] in str(corrupt.value)
    assert not (root / ("k" * 16)).exists()
    assert not list(root.glob("*.tmp-*")), "the partial copy is removed"


def test_the_server_down_during_a_fetch_gives_a_retry_and_a_reason(
    tmp_path: Path, server: StoreServer, location: S3Location, store: S3Artifacts
) -> None:
    _build(tmp_path, store)
    termination = tmp_path / "termination-log"
    args = cli.build_parser().parse_args(
        ["fetch", "--key", "k" * 16, "--cache", str(tmp_path / "cache"), "--max-bytes", "1000000",
         "--attempts", "3", "--termination-log", str(termination)]
    )  # fmt: skip
    env = {**_env(server), **location.to_env()}
    waits: list[float] = []
    server.stop()
    try:
        with pytest.raises(StoreError) as down:
            cli._fetch(args, env, sleep=waits.append)
    finally:
        server.resume()
    assert down.value.reason == "StoreUnreachable"
    assert len(waits) == 2, "retried"
    assert waits[1] > waits[0], "with a growing backoff"
    # The CLI's own exit path writes the reason for the operator to show.
    os.environ.update(env)
    try:
        server.stop()
        code = cli.main(
            ["fetch", "--key", "k" * 16, "--cache", str(tmp_path / "cache"), "--max-bytes",
             "1000000", "--attempts", "1", "--termination-log", str(termination)]
        )  # fmt: skip
    finally:
        server.resume()
        for name in env:
            os.environ.pop(name, None)
    assert code == cli.EXIT_FAILED
    said = json.loads(termination.read_text())
    assert said["reason"] == "StoreUnreachable"
    assert "could not be reached" in said["message"]


def test_eviction_takes_the_least_recently_used_entry_a_server_does_not_hold(
    tmp_path: Path, store: S3Artifacts
) -> None:
    keys = ["a" * 16, "b" * 16, "c" * 16]
    for key in keys:
        _build(tmp_path, store, key, shards=1)
    root = tmp_path / "cache"
    cache.fetch(store, keys[0], root, max_bytes=1 << 30)
    size = cache.entries(root)[0].bytes  # on disk, the manifest included
    limit = 2 * size + size // 2  # room for two
    cache.fetch(store, keys[1], root, max_bytes=limit)
    # a server runs keys[0] (it holds the shared lock), so keys[1] goes though it is newer
    fd = os.open(root / keys[0] / MANIFEST, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        third = cache.fetch(store, keys[2], root, max_bytes=limit)
        assert third.evicted == (keys[1],)
        assert (root / keys[0]).is_dir()
        assert not (root / keys[1]).exists()
        fd2 = os.open(root / keys[2] / MANIFEST, os.O_RDONLY)
        fcntl.flock(fd2, fcntl.LOCK_SH)  # both left are in use now
        with pytest.raises(StoreError) as full:
            cache.fetch(store, keys[1], root, max_bytes=limit)
        os.close(fd2)
        assert full.value.reason == "CacheFull"
    finally:
        os.close(fd)


def test_a_pods_fetch_step_holds_its_artifact_until_the_pod_ends(
    tmp_path: Path, server: StoreServer, store: S3Artifacts
) -> None:
    keys = ["a" * 16, "b" * 16]
    for key in keys:
        _build(tmp_path, store, key, shards=1)
    root = tmp_path / "cache"
    env = {**os.environ, **store.location.to_env(), **_env(server)}
    holder = subprocess.Popen(
        [str(Path(sys.executable).with_name("qmo-store")), "fetch", "--key", keys[0],
         "--cache", str(root), "--max-bytes", str(1 << 30), "--hold",
         "--termination-log", str(tmp_path / "termination-log")],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        said = [holder.stdout.readline(), holder.stdout.readline()]
        assert "fetched and verified" in said[0]
        assert "held in the node cache until the pod ends" in said[1]
        size = cache.entries(root)[0].bytes
        # The server container is down (restarting): only the fetch step holds the artifact,
        # and another pod's fetch on the node cannot evict it.
        with pytest.raises(StoreError) as full:
            cache.fetch(store, keys[1], root, max_bytes=size + size // 2)
        assert full.value.reason == "CacheFull"
        assert (root / keys[0] / MANIFEST).is_file()
    finally:
        holder.send_signal(signal.SIGTERM)  # the pod ends
        assert holder.wait(timeout=60) == 0
    second = cache.fetch(store, keys[1], root, max_bytes=size + size // 2)
    assert second.evicted == (keys[0],)


def test_eviction_skips_an_entry_being_fetched(tmp_path: Path, store: S3Artifacts) -> None:
    keys = ["a" * 16, "b" * 16]
    for key in keys:
        _build(tmp_path, store, key, shards=1)
    root = tmp_path / "cache"
    cache.fetch(store, keys[0], root, max_bytes=1 << 30)
    size = cache.entries(root)[0].bytes
    fd = os.open(root / cache.LOCKS / keys[0], os.O_RDWR)  # a fetch of keys[0] is under way
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StoreError) as full:
            cache.fetch(store, keys[1], root, max_bytes=size + size // 2)
        assert full.value.reason == "CacheFull"
    finally:
        os.close(fd)
    assert cache.fetch(store, keys[1], root, max_bytes=size + size // 2).evicted == (keys[0],)


def test_two_pods_fetching_one_key_on_a_node_download_it_once(
    tmp_path: Path, store: S3Artifacts
) -> None:
    _build(tmp_path, store)
    root = tmp_path / "cache"
    outcomes: list[cache.FetchOutcome] = []

    def fetch() -> None:
        outcomes.append(cache.fetch(store, "k" * 16, root, max_bytes=1 << 30))

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(o.hit for o in outcomes) == [False, True]


def test_gc_keeps_referenced_artifacts_and_collects_the_rest_after_the_retention(
    tmp_path: Path, store: S3Artifacts
) -> None:
    for key in ("a" * 16, "b" * 16):
        _build(tmp_path, store, key, shards=1)
    start = datetime.now(UTC)
    week = timedelta(days=7)
    dry = gc.collect(store, {"a" * 16}, now=start, retention=week, delete=False)
    assert dry.summary()["collectable"] == []
    assert not store.unreferenced_since()
    first = gc.collect(store, {"a" * 16}, now=start, retention=week, delete=True)
    assert [a.cache_key for a in first.plan.waiting] == ["b" * 16]
    assert set(store.unreferenced_since()) == {"b" * 16}
    later = start + week + timedelta(hours=1)
    preview = gc.collect(store, {"a" * 16}, now=later, retention=week, delete=False)
    assert preview.summary()["collectable"] == ["b" * 16]
    assert store.finished_manifest("b" * 16) is not None, "a dry run deletes nothing"
    gc.collect(store, {"a" * 16}, now=later, retention=week, delete=True)
    assert store.finished_manifest("b" * 16) is None
    assert [a.cache_key for a in store.inventory()] == ["a" * 16]
    assert not store.unreferenced_since()


def test_gc_on_the_claim_works_the_same_way(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for key in ("a" * 16, "b" * 16):
        (root / "artifacts" / key).mkdir(parents=True)
        (root / "artifacts" / key / "w.bin").write_bytes(b"x" * 10)
        (root / "artifacts" / key / MANIFEST).write_text(
            json.dumps({"complete": True, "cacheKey": key, "files": []})
        )
    claim = FilesystemArtifacts(root)
    now = datetime.now(UTC) + timedelta(days=30)  # the files are old enough
    gc.collect(claim, {"a" * 16}, now=now, retention=timedelta(days=7), delete=True)
    gc.collect(
        claim, {"a" * 16}, now=now + timedelta(days=8), retention=timedelta(days=7), delete=True
    )
    assert sorted(p.name for p in (root / "artifacts").iterdir()) == ["a" * 16]


def test_a_copy_from_the_claim_publishes_under_the_new_key_without_a_build(
    tmp_path: Path, store: S3Artifacts
) -> None:
    src = a_checkpoint(tmp_path / "src")
    old = a_request().precision("bf16").source(str(src)).output(tmp_path / "claim" / "old").build()
    pipeline.build(
        old.model_copy(update={"cache_key": "o" * 16}),
        recipe_for(old),
        gpus=[H100],
        env={},
        options=pipeline.BuildOptions(download_dir=tmp_path / "dl", log=lambda _: None),
    )
    (src / "model.safetensors").unlink()  # a build would fail now: only a copy can succeed
    new = old.model_copy(
        update={
            "cache_key": "n" * 16,
            "output_dir": store.location.uri("artifacts", "n" * 16),
            "copy_from": str(tmp_path / "claim" / "old"),
        }
    )
    outcome = pipeline.build(
        new,
        recipe_for(new),
        gpus=[],
        env={},
        options=pipeline.BuildOptions(
            download_dir=tmp_path / "dl",
            log=lambda _: None,
            publisher=ObjectStorePublisher(store, "n" * 16, tmp_path / "scratch", print),
        ),
    )
    manifest = store.finished_manifest("n" * 16)
    assert manifest is not None
    assert manifest["migratedFrom"] == "o" * 16
    assert outcome.artifact == store.location.uri("artifacts", "n" * 16)
    fetched = cache.fetch(store, "n" * 16, tmp_path / "cache", max_bytes=1 << 30)
    assert not fetched.hit
    assert (tmp_path / "claim" / "old" / MANIFEST).is_file(), "nothing is removed from the claim"


def test_object_store_keys_stay_under_the_prefix(location: S3Location) -> None:
    assert location.artifact_key("k", "a/b").startswith(location.prefix + "/artifacts/k/")
    assert S3Location.from_env(location.to_env()) == location


def test_get_and_put_move_store_paths_for_build_and_eval_pods(
    tmp_path: Path, server: StoreServer, location: S3Location
) -> None:
    """Datasets in (a file and a directory), an evaluation's outcomes out."""
    env = {**_env(server), **location.to_env()}
    objects = connect(location, env)
    objects.write_bytes(location.key("benchmarks/gsm8k.jsonl"), b'{"q": 1}\n')
    objects.write_bytes(location.key("tasks/support/task.yaml"), b"task: support\n")
    os.environ.update(env)
    try:
        got = cli.main(
            ["get", "--into", str(tmp_path / "store"), "--path", "benchmarks/gsm8k.jsonl",
             "--path", "tasks/support"]
        )  # fmt: skip
        (tmp_path / "out" / "gsm8k").mkdir(parents=True)
        (tmp_path / "out" / "gsm8k" / "outcomes.jsonl").write_text("{}\n")
        put = cli.main(["put", "--from", str(tmp_path / "out"), "--to", "evaluations/e1"])
        missing = cli.main(
            ["get", "--into", str(tmp_path / "store"), "--path", "nothing/here",
             "--termination-log", str(tmp_path / "said")]
        )  # fmt: skip
    finally:
        for name in env:
            os.environ.pop(name, None)
    assert (got, put, missing) == (0, 0, cli.EXIT_FAILED)
    assert (tmp_path / "store" / "benchmarks" / "gsm8k.jsonl").read_bytes() == b'{"q": 1}\n'
    assert (tmp_path / "store" / "tasks" / "support" / "task.yaml").is_file()
    assert objects.read_bytes(location.key("evaluations/e1/gsm8k/outcomes.jsonl")) == b"{}\n"
    assert json.loads((tmp_path / "said").read_text())["reason"] == "StorePathMissing"


def test_an_upload_killed_half_way_leaves_nothing_visible_and_the_retry_completes(
    tmp_path: Path, server: StoreServer, location: S3Location, store: S3Artifacts
) -> None:
    """A builder SIGKILLed in the middle of a multipart upload: no object, no artifact."""
    key = "u" * 16
    big = tmp_path / "staging" / "checkpoint" / "model.safetensors"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(1 << 20) * 96)  # 96 MiB: several parts
    object_key = location.artifact_key(key, "checkpoint/model.safetensors")
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from qmo.store.location import S3Location\n"
        "from qmo.store.objects import connect\n"
        "loc = S3Location.from_env(os.environ)\n"
        "connect(loc, os.environ).upload_file(Path(sys.argv[1]), sys.argv[2], part_size=8 << 20,"
        " concurrency=1)\n"
    )
    uploads = server.root / "data" / BUCKET / ".sgwtmp" / "multipart"
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(big), object_key],
        env={**os.environ, **_env(server), **location.to_env()},
    )
    try:
        # The server keeps a multipart upload's parts under .sgwtmp until it completes: once
        # some are there, the upload is half-way.
        deadline = time.monotonic() + 60
        while not any(p.is_file() for p in uploads.rglob("*")):
            assert child.poll() is None, "the upload ended before it could be killed"
            assert time.monotonic() < deadline, "no part reached the server"
            time.sleep(0.01)  # a file appearing on disk has no watch to wait on
    finally:
        child.kill()
        child.wait()
    assert store.objects.head(object_key) is None, "a killed multipart upload is no object"
    assert store.finished_manifest(key) is None
    outcome = _build(tmp_path, store, key)
    assert not outcome.reused
    assert store.finished_manifest(key) is not None


class _Cache:
    """What the operator's GC reads of its caches: every cached object of a kind."""

    def __init__(self, objects: dict[str, list[dict[str, object]]]) -> None:
        self.objects = objects

    def all_of(self, kind: str) -> list[dict[str, object]]:
        return self.objects.get(kind, [])


def test_the_operators_gc_keeps_what_the_cluster_names_and_reports_it_in_metrics(
    tmp_path: Path, server: StoreServer, location: S3Location, store: S3Artifacts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for key in ("a" * 16, "b" * 16, "c" * 16):
        _build(tmp_path, store, key, shards=1)
    cache = _Cache(
        {
            "QuantizedModel": [{"status": {"variants": [{"cacheKey": "a" * 16}]}}],
            "Pod": [{"metadata": {"annotations": {"qmo.dev/revision": "b" * 16}}}],
        }
    )
    config = OperatorConfig(
        s3=S3Defaults(
            bucket=BUCKET, prefix=location.prefix, endpoint=server.endpoint, path_style=True
        ),
        store_gc=StoreGc(retention_hours=1.0, delete=False),
    )
    for name, value in _env(server).items():
        monkeypatch.setenv(name, value)
    dry = store_gc.collect_once(cache, config, datetime.now(UTC))  # type: ignore[arg-type]
    assert dry is not None
    assert [a.cache_key for a in dry.plan.keep] == ["a" * 16, "b" * 16]
    here = location.uri()
    assert (
        REGISTRY.get_sample_value("qmo_store_artifacts", {"store": here, "state": "referenced"})
        == 2
    )
    assert (
        REGISTRY.get_sample_value("qmo_store_artifacts", {"store": here, "state": "waiting"}) == 1
    )
    assert REGISTRY.get_sample_value("qmo_store_gc_dry_run", {"store": here}) == 1
    deleting = replace(config, store_gc=StoreGc(retention_hours=1.0, delete=True))
    store_gc.collect_once(cache, deleting, datetime.now(UTC))  # type: ignore[arg-type]
    later = datetime.now(UTC) + timedelta(hours=2)
    done = store_gc.collect_once(cache, deleting, later)  # type: ignore[arg-type]
    assert done is not None
    assert [a.cache_key for a in done.plan.collect] == ["c" * 16]
    assert [a.cache_key for a in store.inventory()] == ["a" * 16, "b" * 16]


def test_a_corrupted_part_of_a_large_file_is_caught_by_the_worker_that_streams_it(
    tmp_path: Path, server: StoreServer, store: S3Artifacts
) -> None:
    """Files of several parts are checked part by part, in parallel (qmo.store.checksums)."""
    key = "p" * 16
    staging = tmp_path / "staging"
    (staging / "checkpoint").mkdir(parents=True)
    big = staging / "checkpoint" / "model.safetensors"
    big.write_bytes(os.urandom(1 << 20) * 70)  # 70 MiB: three 32 MiB parts
    whole, parts = sha256_with_parts(big)
    assert len(parts) == 3
    manifest = {
        "complete": True, "cacheKey": key, "totalBytes": big.stat().st_size,
        "partBytes": PART_BYTES,
        "files": [{"path": "checkpoint/model.safetensors", "bytes": big.stat().st_size,
                   "sha256": whole, "partSha256": list(parts)}],
    }  # fmt: skip
    store.publish(staging, key, manifest)
    good = cache.fetch(store, key, tmp_path / "good", max_bytes=1 << 30)
    assert sha256_with_parts(good.path / "checkpoint" / "model.safetensors")[0] == whole
    on_disk = server.object_path(
        BUCKET, store.location.artifact_key(key, manifest["files"][0]["path"])
    )
    data = bytearray(on_disk.read_bytes())
    data[PART_BYTES + 5] ^= 0xFF  # in the second part
    on_disk.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch) as corrupt:
        cache.fetch(store, key, tmp_path / "bad", max_bytes=1 << 30)
    assert f"bytes {PART_BYTES}-{2 * PART_BYTES}" in str(corrupt.value)
    assert not (tmp_path / "bad" / key).exists()
