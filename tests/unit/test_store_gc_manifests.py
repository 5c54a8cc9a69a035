"""The claim store's GC Job and keep list, as the operator writes them (pure)."""

from __future__ import annotations

from qmo.config import StoreGc
from qmo.manifests.store_gc import gc_job, keep_config_map
from qmo.planner.store import ClaimStore


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
    keep = keep_config_map("models", "qmo-engines", ["b" * 64, "a" * 64])
    assert keep["data"]["keys"] == f"{'a' * 64}\n{'b' * 64}\n"
