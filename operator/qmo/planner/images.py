"""Which images a model's build Jobs, serving pods and eval Jobs run, and whether the operator
allows them.

A builder image runs with the model's token Secret in its environment and writes the engine
store other models reuse; a serving image reads that store and answers the model's clients; an
evaluator image runs the model's benchmark code. So the operator's configuration, not whoever
may create a QuantizedModel, decides which images may run. Pure.
"""

from __future__ import annotations

from qmo.api.quantizedmodel import DEFAULT_ENGINE_IMAGE, QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.vocabulary import Reason, Refusal


def builder_image(spec: QuantizedModelSpec, config: OperatorConfig) -> str:
    """engine.builderImage when set, else the operator's."""
    return spec.engine.builder_image or config.builder_image


def evaluator_image(spec: QuantizedModelSpec, config: OperatorConfig) -> str:
    """quality.evaluatorImage when set, else the operator's."""
    return spec.quality.evaluator_image or config.evaluator_image


def builder_allowed(spec: QuantizedModelSpec, config: OperatorConfig) -> Refusal | None:
    return _allowed("engine.builderImage", builder_image(spec, config), config)


def evaluator_allowed(spec: QuantizedModelSpec, config: OperatorConfig) -> Refusal | None:
    return _allowed("quality.evaluatorImage", evaluator_image(spec, config), config)


def serving_allowed(spec: QuantizedModelSpec, config: OperatorConfig) -> Refusal | None:
    """engine.image: the TensorRT-LLM release that serves (and is part of the cache key)."""
    return _allowed("engine.image", spec.engine.image, config)


def _allowed(field: str, image: str, config: OperatorConfig) -> Refusal | None:
    if config.image_allowed(image, defaults=(DEFAULT_ENGINE_IMAGE,)):
        return None
    return Refusal(
        Reason.IMAGE_NOT_ALLOWED,
        f"{field} {image} is not among the operator's allowed images (chart value "
        "allowedImages; qmo run --allowed-image)",
    )
