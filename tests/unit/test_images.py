"""The operator decides which builder, serving and evaluator images run; the spec may only
choose among them. The builder image is part of the cache key."""

from __future__ import annotations

import pytest

from qmo.api.quantizedmodel import DEFAULT_ENGINE_IMAGE
from qmo.config import OperatorConfig
from qmo.planner import images
from qmo.planner.plan import plan_model
from qmo.vocabulary import Action, Reason
from tests.support.builders import a_class, a_cluster, a_model, variant

OPERATOR = OperatorConfig(builder_image="ghcr.io/qmo-dev/qmo-builder:1", evaluator_image="e:1")
H100 = a_class("h100")


@pytest.mark.parametrize(
    ("allowed", "image", "expected"),
    [
        ((), "ghcr.io/qmo-dev/qmo-builder:1", True),
        ((), "evil.example.com/miner:latest", False),
        (("registry.local/qmo/*",), "registry.local/qmo/builder:dev", True),
        (("registry.local/qmo/*",), "registry.local/other:dev", False),
        (("registry.local/qmo/builder:1",), "registry.local/qmo/builder:10", False),
    ],
    ids=[
        "the operator's own builder is allowed by default",
        "anything else is refused by default",
        "a trailing * allows a prefix",
        "outside the prefix is refused",
        "an exact entry is exact",
    ],
)
def test_image_allowed(allowed: tuple[str, ...], image: str, expected: bool) -> None:
    config = OperatorConfig(builder_image=OPERATOR.builder_image, allowed_images=allowed)
    assert config.image_allowed(image) == expected


def test_a_builder_image_the_operator_does_not_allow_blocks_the_build_with_a_reason() -> None:
    spec = a_model().with_precisions("fp8").with_builder_image("evil.example.com/x:1").spec()
    planned = variant(plan_model(spec, a_cluster(H100).observed(), OPERATOR), "h100-fp8")
    assert planned.action == Action.BLOCKED
    assert planned.reason == Reason.IMAGE_NOT_ALLOWED
    assert "evil.example.com/x:1" in planned.message


def test_another_builder_image_is_another_artifact() -> None:
    config = OperatorConfig(builder_image="b:1", allowed_images=("b:*", DEFAULT_ENGINE_IMAGE))
    keys = {
        image: variant(
            plan_model(
                a_model().with_precisions("fp8").with_builder_image(image).spec(),
                a_cluster(H100).observed(),
                config,
            ),
            "h100-fp8",
        ).cache_key
        for image in ("b:1", "b:2")
    }
    assert keys["b:1"] != keys["b:2"]


def test_the_evaluator_image_of_the_spec_is_used_when_allowed() -> None:
    spec = a_model().with_quality(evaluatorImage="registry.local/eval:2").spec()
    config = OperatorConfig(evaluator_image="e:1", allowed_images=("registry.local/*",))
    assert images.evaluator_image(spec, config) == "registry.local/eval:2"
    assert images.evaluator_allowed(spec, config) is None
    assert images.evaluator_allowed(spec, OPERATOR) is not None


def test_the_default_serving_image_runs_without_an_allowlist() -> None:
    planned = variant(
        plan_model(a_model().with_precisions("fp8").spec(), a_cluster(H100).observed(), OPERATOR),
        "h100-fp8",
    )
    assert planned.action == Action.BUILD


def test_a_serving_image_the_operator_does_not_allow_is_refused_with_a_reason() -> None:
    spec = a_model().with_precisions("fp8").with_image("evil.example.com/trtllm:1").spec()
    planned = variant(plan_model(spec, a_cluster(H100).observed(), OPERATOR), "h100-fp8")
    assert planned.action == Action.BLOCKED
    assert planned.reason == Reason.IMAGE_NOT_ALLOWED
    assert "engine.image evil.example.com/trtllm:1" in planned.message


def test_an_allowlist_names_the_serving_images_too() -> None:
    spec = a_model().with_precisions("fp8").with_image("registry.local/trtllm:1.2.1").spec()
    config = OperatorConfig(builder_image="b:1", allowed_images=("b:1", "registry.local/*"))
    assert images.serving_allowed(spec, config) is None
    default_image = a_model().with_precisions("fp8").spec()
    refusal = images.serving_allowed(default_image, config)
    assert refusal is not None, "a list replaces the defaults, the TensorRT-LLM release too"
    assert refusal.reason == Reason.IMAGE_NOT_ALLOWED
