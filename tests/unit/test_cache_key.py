"""Cache keys: equal build inputs give equal keys, and nothing else moves them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qmo.api.buildcontract import ARTIFACTS_DIR
from qmo.gpu import GpuClass
from qmo.manifests import names
from qmo.planner.cachekey import cache_key, short_key
from qmo.planner.plan import plan_model
from tests.support.builders import ModelBuilder, a_class, a_cluster, a_model, key_of, variant

Change = Callable[[ModelBuilder], ModelBuilder]


def test_the_key_is_a_sha256_hex_digest_and_its_short_form_is_16_digits() -> None:
    key = cache_key({"precision": "fp8"})
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert short_key(key) == key[:16]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="top-level-order"),
        pytest.param(
            {"gpu": {"product": "p", "computeCapability": "9.0"}, "tp": 2},
            {"tp": 2, "gpu": {"computeCapability": "9.0", "product": "p"}},
            id="nested-order",
        ),
    ],
)
def test_key_order_of_the_content_does_not_change_the_key(
    one: dict[str, object], other: dict[str, object]
) -> None:
    assert cache_key(one) == cache_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param({"tp": 1}, {"tp": 2}, id="a-value"),
        pytest.param({"tp": 1}, {"tp": "1"}, id="a-type"),
        pytest.param({"revision": None}, {}, id="null-versus-absent"),
        pytest.param({"limits": [1, 2]}, {"limits": [2, 1]}, id="list-order"),
    ],
)
def test_different_content_gives_a_different_key(
    one: dict[str, object], other: dict[str, object]
) -> None:
    assert cache_key(one) != cache_key(other)


def _fp8() -> ModelBuilder:
    return a_model().with_precisions("fp8", "bf16")


H100 = a_cluster(a_class("h100"))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: m.with_replicas(4), id="serving-replicas"),
        pytest.param(
            lambda m: m.with_serving(resources={"requests": {"cpu": "8", "memory": "64Gi"}}),
            id="serving-resources",
        ),
        pytest.param(
            lambda m: m.with_serving(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]),
            id="serving-tolerations",
        ),
        pytest.param(lambda m: m.with_serving(port=9000), id="serving-port"),
        pytest.param(lambda m: m.with_serving(startupTimeoutSeconds=3600), id="startup-timeout"),
        pytest.param(lambda m: m.serving_default("bf16"), id="serving-default"),
        pytest.param(
            lambda m: m.with_quality(
                gate="before-traffic",
                maxRegressionPercent=0.5,
                onRegression="fallback",
                benchmarks=[{"name": "gsm8k"}],
            ),
            id="quality-settings",
        ),
        pytest.param(lambda m: m.ungated(), id="gate-off"),
        pytest.param(lambda m: m.with_token("hf-token"), id="credentials-secret"),
        pytest.param(lambda m: m.with_build(backoffLimit=3, gpus=2), id="build-job-settings"),
        pytest.param(lambda m: m.with_precisions("fp8"), id="other-precisions-listed"),
    ],
)
def test_changes_that_do_not_shape_the_artifact_keep_the_key(change: Change) -> None:
    before = key_of(_fp8().spec(), H100, "h100-fp8")
    after = key_of(change(_fp8()).spec(), H100, "h100-fp8")
    assert after == before


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: m.with_revision("1a2b3c4"), id="model-revision"),
        pytest.param(lambda m: m.unpinned(), id="revision-unpinned"),
        pytest.param(lambda m: m.from_source("hf://meta-llama/Llama-3.1-70B"), id="model-source"),
        pytest.param(
            lambda m: m.with_image("nvcr.io/nvidia/tensorrt-llm/release:1.2.0"), id="engine-image"
        ),
        pytest.param(lambda m: m.with_backend("pytorch"), id="engine-backend"),
        pytest.param(lambda m: m.with_kv_cache("bf16"), id="kv-cache-dtype"),
        pytest.param(lambda m: m.with_tensor_parallel(2), id="tensor-parallel"),
        pytest.param(
            lambda m: m.with_limits(max_batch_size=32, max_seq_len=8192), id="max-batch-size"
        ),
        pytest.param(
            lambda m: m.with_limits(max_batch_size=64, max_seq_len=4096), id="max-seq-len"
        ),
        pytest.param(lambda m: m.with_calibration(samples=256), id="calibration"),
    ],
)
def test_changes_that_shape_the_artifact_change_the_key(change: Change) -> None:
    before = key_of(_fp8().spec(), H100, "h100-fp8")
    after = key_of(change(_fp8()).spec(), H100, "h100-fp8")
    assert after != before


def test_the_precision_is_part_of_the_key() -> None:
    spec = _fp8().spec()
    assert key_of(spec, H100, "h100-fp8") != key_of(spec, H100, "h100-bf16")


def test_quantization_settings_do_not_rebuild_the_unquantized_variant() -> None:
    before = key_of(_fp8().spec(), H100, "h100-bf16")
    after = key_of(_fp8().with_calibration(samples=256).spec(), H100, "h100-bf16")
    assert after == before


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(a_class("h100"), a_class("h100-pcie"), id="gpu-product"),
        pytest.param(a_class("h100"), a_class("h100", compute_capability="9.1"), id="gpu-sm"),
    ],
)
def test_the_gpu_class_product_and_compute_capability_are_part_of_the_key(
    one: GpuClass, other: GpuClass
) -> None:
    spec = a_model().with_precisions("fp8").spec()
    assert key_of(spec, a_cluster(one), f"{one.name}-fp8") != key_of(
        spec, a_cluster(other), f"{other.name}-fp8"
    )


def test_the_gpu_count_of_a_class_is_not_part_of_the_key() -> None:
    spec = a_model().with_precisions("fp8").spec()
    small = a_cluster(a_class("h100", nodes=1, gpus_per_node=8))
    large = a_cluster(a_class("h100", nodes=4, gpus_per_node=8))
    assert key_of(spec, small, "h100-fp8") == key_of(spec, large, "h100-fp8")


def test_two_models_with_the_same_build_inputs_share_keys_and_build_jobs() -> None:
    # Two QuantizedModels ("chat" and "batch"): same checkpoint and build settings, different
    # serving and gate. Their names never enter the plan; their builds converge on one Job.
    chat = a_model().with_precisions("fp8", "int8").with_replicas(1).ungated().spec()
    batch = (
        a_model()
        .with_precisions("int8", "fp8")
        .with_replicas(3)
        .with_serving(resources={"limits": {"memory": "96Gi"}})
        .with_quality(onRegression="fallback")
        .spec()
    )
    cluster = a_cluster(a_class("h100"), a_class("a100")).observed()
    chat_plan, batch_plan = plan_model(chat, cluster), plan_model(batch, cluster)
    for name in ("h100-fp8", "h100-int8"):
        ours, theirs = variant(chat_plan, name), variant(batch_plan, name)
        assert ours.cache_key is not None
        assert ours.cache_key == theirs.cache_key
        assert names.build_job(name, ours.cache_key) == names.build_job(name, theirs.cache_key)
        assert names.variant_deployment("chat", name) != names.variant_deployment("batch", name)


def test_the_build_request_writes_to_the_directory_named_by_its_key() -> None:
    planned = variant(plan_model(_fp8().spec(), H100.observed()), "h100-fp8")
    assert planned.build is not None
    assert planned.build.output_dir == f"{ARTIFACTS_DIR}/{planned.build.cache_key}"
    assert planned.serve_key is None  # nothing serves before it is built


def test_models_on_different_engine_stores_do_not_share_a_build() -> None:
    # An artifact lives on one claim: a model reading another claim must build its own, or it
    # would deploy an artifact its pods cannot see (builds are observed namespace-wide by key).
    default_store = key_of(_fp8().spec(), H100, "h100-fp8")
    other_store = key_of(_fp8().with_store("team-b-engines").spec(), H100, "h100-fp8")
    assert other_store != default_store


def test_creating_the_store_claim_or_sizing_it_does_not_change_the_key() -> None:
    before = key_of(_fp8().with_store("qmo-engines").spec(), H100, "h100-fp8")
    after = key_of(
        _fp8().with_store("qmo-engines", create=True, size="2Ti").spec(), H100, "h100-fp8"
    )
    assert after == before
