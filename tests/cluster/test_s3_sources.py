"""A model whose checkpoint is on an S3-compatible server (`model.source: s3://...`): the
builder fetches it through qmo's object-store client, on the server and with the keys the
operator gives the build pod (`QMO_SOURCE_S3_*`), against versitygw on loopback.

The environment the tests hand the builder is the build Job's own (qmo.manifests.build with
the model's `model.s3`), with the Secret's keys resolved as the kubelet would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmo.api.buildcontract import SourceRef
from qmo.builder import source
from qmo.builder.errors import SourceUnavailable
from qmo.config import OperatorConfig
from qmo.manifests.store import StoreSetup, source_fields
from qmo.store.location import S3Location, source_location
from qmo.store.objects import connect
from tests.support.build_requests import a_checkpoint
from tests.support.builders import a_model
from tests.support.store_server import StoreServer

BUCKET = "models"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    with StoreServer.start(tmp_path_factory.mktemp("s3") / "server") as running:
        running.create_bucket(BUCKET)
        checkpoint = a_checkpoint(tmp_path_factory.mktemp("src") / "llama", shards=2)
        (checkpoint / "optimizer.pt").write_bytes(b"a pickle a build never loads")
        keys = {"AWS_ACCESS_KEY_ID": running.access_key,
                "AWS_SECRET_ACCESS_KEY": running.secret_key}  # fmt: skip
        uploads = connect(S3Location(BUCKET, endpoint=running.endpoint, path_style=True), keys)
        for path in checkpoint.iterdir():
            uploads.upload_file(path, f"llama/8b/{path.name}")
        yield running


def build_pod_env(server: StoreServer, secret: str, **s3: Any) -> dict[str, str]:
    """The source variables of the build Job qmo writes for a model on `s3://models/...`,
    with the Secret `keys` holding `secret` as its AWS_SECRET_ACCESS_KEY."""
    spec = (
        a_model()
        .from_source(f"s3://{BUCKET}/llama/8b")
        .with_source_s3(endpoint=server.endpoint, pathStyle=True, credentialsSecretName="keys",
                        **s3)
        .spec()
    )  # fmt: skip
    setup = StoreSetup.of(spec, OperatorConfig())
    assert setup.source is not None
    env, _, _ = source_fields(setup.source)
    secret_data = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": secret}
    resolved = {}
    for var in env:
        if "value" in var:
            resolved[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "keys"
            resolved[var["name"]] = secret_data[ref["key"]]
    return resolved


def test_an_s3_source_is_fetched_with_the_keys_the_build_pod_gets(
    server: StoreServer, tmp_path: Path
) -> None:
    env = build_pod_env(server, server.secret_key)
    assert source_location(BUCKET, env).endpoint == server.endpoint

    opened = source.open_source(
        SourceRef(uri=f"s3://{BUCKET}/llama/8b"), env=env, download_dir=tmp_path
    )

    assert source.completeness_problems(opened) == []
    names = sorted(p.name for p in opened.iterdir())
    assert "optimizer.pt" not in names, "no pickles"
    assert "model.safetensors.index.json" in names
    index = json.loads((opened / "model.safetensors.index.json").read_text())
    for shard in set(index["weight_map"].values()):
        assert (opened / shard).stat().st_size > 0


def test_wrong_keys_are_a_clear_error_that_names_no_key(
    server: StoreServer, tmp_path: Path
) -> None:
    env = build_pod_env(server, "rotated-wrongly")
    with pytest.raises(SourceUnavailable) as raised:
        source.open_source(SourceRef(uri=f"s3://{BUCKET}/llama/8b"), env=env, download_dir=tmp_path)
    said = str(raised.value)
    assert "StoreAccessDenied" in said
    assert "rotated-wrongly" not in said
    assert server.access_key not in said


def test_an_empty_prefix_is_unavailable(server: StoreServer, tmp_path: Path) -> None:
    env = build_pod_env(server, server.secret_key)
    with pytest.raises(SourceUnavailable, match="holds no objects"):
        source.open_source(SourceRef(uri=f"s3://{BUCKET}/nothing"), env=env, download_dir=tmp_path)
