"""The API models accept the examples and reject bad specs with messages a user understands."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from qmo.api import Precision, QuantizedModelSpec
from qmo.manifests_io import ManifestError, load_resources, parse_resource
from tests.invalid_specs import INVALID_CASES, InvalidCase, invalid_spec, valid_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples_to_check() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_manifest_validates(path: Path) -> None:
    resources = load_resources(path)
    assert resources, f"{path.name} holds no qmo resource"
    for resource in resources:
        assert resource.metadata["name"]


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_with_a_clear_message(case: InvalidCase) -> None:
    with pytest.raises(ValidationError) as raised:
        QuantizedModelSpec.model_validate(invalid_spec(case))
    assert case.local in str(raised.value)


def test_the_base_spec_of_the_invalid_cases_is_itself_valid() -> None:
    QuantizedModelSpec.model_validate(valid_spec())


def test_defaults_follow_the_design() -> None:
    spec = QuantizedModelSpec.model_validate({"model": {"source": "hf://org/model"}})
    assert spec.precisions == [Precision.AUTO]
    assert spec.quality.max_regression_percent == 1.5
    assert spec.kv_cache_dtype == "auto"
    assert spec.gpu.classes == ["auto"]
    assert spec.quantization.exclude_modules == ["lm_head"]
    assert spec.quantization.calibration.samples == 512


@pytest.mark.parametrize(
    "source",
    ["hf://gpt2", "hf://meta-llama/Llama-3.1-8B", "s3://bucket/a/b", "pvc://models/q/7b"],
)
def test_each_supported_source_scheme_is_accepted(source: str) -> None:
    QuantizedModelSpec.model_validate({"model": {"source": source}})


@pytest.mark.parametrize(
    "source", ["http://x/y", "hf://", "s3://UPPER/x", "pvc://Bad_Claim/x", "hf://org/model name"]
)
def test_malformed_sources_are_rejected(source: str) -> None:
    with pytest.raises(ValidationError, match=r"model\.source must be"):
        QuantizedModelSpec.model_validate({"model": {"source": source}})


def test_a_prequantized_checkpoint_names_exactly_one_precision() -> None:
    with pytest.raises(ValidationError, match="serves only the precision"):
        QuantizedModelSpec.model_validate(
            {"model": {"source": "hf://nvidia/x-FP8", "format": "modelopt-prequantized"}}
        )


def test_unknown_fields_are_rejected_so_typos_surface() -> None:
    with pytest.raises(ValidationError, match="precision"):
        QuantizedModelSpec.model_validate({"model": {"source": "hf://a/b"}, "precision": ["fp8"]})


def test_wire_form_round_trips_through_the_model() -> None:
    spec = QuantizedModelSpec.model_validate(valid_spec())
    again = QuantizedModelSpec.model_validate(spec.to_wire())
    assert again == spec
    assert "kvCacheDtype" in spec.to_wire()


def test_an_object_of_another_kind_is_not_taken_for_a_qmo_resource() -> None:
    with pytest.raises(ManifestError, match="not a qmo resource"):
        parse_resource({"apiVersion": "v1", "kind": "ConfigMap"})


def test_a_model_name_longer_than_a_label_value_is_rejected() -> None:
    from qmo.api import QuantizedModel
    from qmo.api.quantizedmodel import NAME_TOO_LONG

    body = {"metadata": {"name": "m" * 64}, "spec": valid_spec()}
    with pytest.raises(ValidationError, match="at most 63 characters"):
        QuantizedModel.model_validate(body)
    QuantizedModel.model_validate({**body, "metadata": {"name": "m" * 63}})
    assert "labels every object" in NAME_TOO_LONG


@pytest.mark.parametrize(
    ("resources", "valid"),
    [
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "4"}}, True),
        ({"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}, False),
        ({"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}, True),
        ({"requests": {"example.com/dev": "1"}, "limits": {"example.com/dev": "2"}}, False),
        ({"requests": {"example.com/dev": "1"}}, True),
        ({"requests": {"hugepages-2Mi": "1Gi"}}, False),
        ({"requests": {"hugepages-2Mi": "1Gi", "memory": "2Gi"}}, True),
        ({"requests": {"cpu": "lots"}}, False),
        ({"requests": {"gpuish": "1"}}, False),
    ],
    ids=[
        "a request below its limit",
        "a request above its limit",
        "equal quantities in different units",
        "an extended resource must request its limit",
        "an extended resource alone gets its limit from its request",
        "huge pages alone",
        "huge pages beside memory",
        "not a quantity",
        "not a resource name",
    ],
)
def test_resource_requirements_are_what_a_pod_would_accept(
    resources: dict[str, dict[str, str]], valid: bool
) -> None:
    from pydantic import ValidationError

    from qmo.api.base import ResourceRequirements

    if valid:
        ResourceRequirements.from_wire(resources)
    else:
        with pytest.raises(ValidationError):
            ResourceRequirements.from_wire(resources)


@pytest.mark.parametrize(
    "header", ["X-Gateway-Model-Name", "x-model", "X-Inference-Model", "X-Forwardedness"]
)
def test_an_x_header_that_routes_nothing_else_may_carry_the_model_name(header: str) -> None:
    spec = {**valid_spec(), "routing": {"parentRefs": [{"name": "inference"}], "header": header}}
    routing = QuantizedModelSpec.model_validate(spec).routing
    assert routing is not None
    assert routing.header == header
