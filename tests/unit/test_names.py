"""Names qmo derives from model and GPU names are valid Kubernetes names, stable and unique."""

from __future__ import annotations

import re

import pytest

from qmo.api.quantizedmodel import Precision
from qmo.dnsnames import dns_label
from qmo.gpu import class_name_for
from qmo.manifests import names
from qmo.planner.types import variant_name
from tests.support.builders import a_class

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    "model",
    ["llama-3.1-8b", "qwen2.5-7b", "3b-chat", "1", "a." * 31 + "b", "x" * 63],
    ids=["dots", "dots after digits", "leading digit", "one digit", "63 chars of dots", "63"],
)
def test_every_service_name_from_a_valid_model_name_is_a_dns_label(model: str) -> None:
    for name in (
        names.main_service(model),
        names.variant_service(model, "h100-fp8"),
        names.candidate_service(model, "a100-80gb-int4-gptq"),
    ):
        assert DNS_1035.match(name), name
        assert len(name) <= 63, name


def test_valid_model_names_keep_their_names() -> None:
    assert names.main_service("llama-8b") == "llama-8b"
    assert names.variant_service("llama-8b", "h100-fp8") == "llama-8b-h100-fp8"


def test_names_made_valid_stay_apart_and_stay_the_same() -> None:
    assert dns_label("llama-3.1-8b") != dns_label("llama-3-1-8b")
    assert dns_label("llama-3.1-8b") == dns_label("llama-3.1-8b")
    assert dns_label("llama-3.1-8b").startswith("llama-3-1-8b-")


@pytest.mark.parametrize("precision", list(Precision))
def test_a_long_product_name_still_makes_variant_names_that_are_label_values(
    precision: Precision,
) -> None:
    product = "NVIDIA-Some-Future-Accelerator-With-A-Very-Long-Marketing-Name-96GB-HBM3e-SXM"
    gpu_class = a_class("h100")
    long_class = type(gpu_class)(**{**gpu_class.__dict__, "name": class_name_for(product)})
    name = variant_name(long_class, precision)
    assert LABEL_VALUE.match(name), name
    assert len(name) <= 63, name


DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "config_map",
    ["gsm8k.v2", "gsm8k", "3b.data", "a." * 100 + "b", "x" * 253, "a" * 54 + ".b"],
    ids=["dots", "plain", "leading digit", "253 of dots", "253", "a dot at the cut"],
)
def test_a_dataset_volume_is_a_dns_1123_label_whatever_its_config_map_is_called(
    config_map: str,
) -> None:
    assert DNS_1123_LABEL.match(names.dataset_volume(config_map))
    assert len(names.dataset_volume(config_map)) <= 63


def test_dataset_volumes_stay_apart_and_valid_ones_keep_their_names() -> None:
    assert names.dataset_volume("gsm8k") == "dataset-gsm8k"
    assert names.dataset_volume("3b-data") == "dataset-3b-data"
    assert names.dataset_volume("gsm8k.v2") != names.dataset_volume("gsm8k-v2")
    assert names.dataset_volume("gsm8k.v2") == names.dataset_volume("gsm8k.v2")
