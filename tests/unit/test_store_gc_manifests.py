"""The GC Jobs and keep lists the operator writes for the stores it cannot reach itself (a
claim, a model's own bucket), and which stores those are (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from qmo.config import OperatorConfig, S3Defaults, StoreGc
from qmo.controller.store_gc import stores_collected_by_jobs
from qmo.manifests.store_gc import gc_job, keep_config_map
from qmo.planner.store import BucketStore, ClaimStore
from qmo.store.location import S3Location
from tests.support.builders import a_model

TEAM_BUCKET = BucketStore(
    S3Location("team-a", "qmo", "http://minio.team-a:9000", path_style=True),
    credentials_secret="team-keys",
    ca_bundle=("team-ca", "ca.crt"),
    service_account="team-store",
)


def test_the_gc_job_mounts_the_claim_and_the_keep_list_and_is_a_dry_run_by_default() -> None:
    job = gc_job(
        "models", ClaimStore("qmo-engines"), image="qmo-evaluator", settings=StoreGc(),
        pass_id="20261202064500",
    )  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["gc", "--root", "/store"]
    assert "--delete" not in container["args"]
    assert container["args"][container["args"].index("--retention-hours") + 1] == "168.0"
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {
            "name": "engine-store",
            "persistentVolumeClaim": {"claimName": "qmo-engines", "readOnly": False},
        }
    ]
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["metadata"]["annotations"]["qmo.dev/store"] == "pvc:models/qmo-engines"


def test_deleting_is_asked_for_explicitly_and_the_keep_list_is_sorted_one_per_line() -> None:
    job = gc_job(
        "models", ClaimStore("qmo-engines"), image="i",
        settings=StoreGc(delete=True, retention_hours=24), pass_id="1",
    )  # fmt: skip
    assert "--delete" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    keep = keep_config_map("models", ClaimStore("qmo-engines"), ["b" * 64, "a" * 64])
    assert keep["data"]["keys"] == f"{'a' * 64}\n{'b' * 64}\n"


def test_a_models_own_bucket_is_collected_by_a_job_with_its_namespaces_keys() -> None:
    job = gc_job("team-a", TEAM_BUCKET, image="i", settings=StoreGc(), pass_id="1")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--root" not in container["args"], "the bucket, from the environment"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["QMO_STORE_S3_BUCKET"] == "team-a"
    assert env["QMO_STORE_S3_ENDPOINT"] == "http://minio.team-a:9000"
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "team-keys", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert any(v.get("configMap", {}).get("name") == "team-ca" for v in pod["volumes"])
    assert pod["serviceAccountName"] == "team-store"
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert job["metadata"]["annotations"]["qmo.dev/store"] == "s3://team-a/qmo"
    assert job["metadata"]["name"].startswith("qmo-store-gc-b-")
    keep = keep_config_map("team-a", TEAM_BUCKET, [])
    volume = next(v for v in pod["volumes"] if v["name"] == "keep")
    assert volume["configMap"]["name"] == keep["metadata"]["name"]


DEFAULT_BUCKET = OperatorConfig(s3=S3Defaults(bucket="models", prefix="qmo"))


def _model(namespace: str, **store: Any) -> dict[str, Any]:
    spec = a_model().with_store("qmo-engines", **store).wire() if store else a_model().wire()
    return {"metadata": {"namespace": namespace, "name": "m"}, "spec": spec}


@pytest.mark.parametrize(
    ("models", "claims", "expected"),
    [
        pytest.param(
            [_model("a"), _model("b")], {"a"}, [("a", "qmo-engines")],
            id="claims that exist, in their namespaces",
        ),
        pytest.param(
            [_model("a", type="s3")], set(), [],
            id="the default bucket: the operator's own pass",
        ),
        pytest.param(
            [_model("z", type="s3", s3={"bucket": "team"}),
             _model("b", type="s3", s3={"bucket": "team"})], set(), [("b", "s3://team/qmo")],
            id="a model's own bucket: once, from the first namespace",
        ),
    ],
)  # fmt: skip
def test_which_stores_gc_jobs_collect(
    models: list[dict[str, Any]], claims: set[str], expected: list[tuple[str, str]]
) -> None:
    found = stores_collected_by_jobs(
        models, lambda ns: frozenset({"qmo-engines"}) if ns in claims else frozenset(),
        DEFAULT_BUCKET,
    )  # fmt: skip
    assert sorted(found) == expected
