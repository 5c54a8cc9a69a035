"""A build refuses, before any work, GPUs it is not for; capabilities compare as numbers."""

from __future__ import annotations

import pytest

from qmo.api.buildcontract import ExitCode
from qmo.builder.gpucheck import (
    SeenGpu,
    normalize_product,
    refusal,
)
from qmo.builder.gpuprobe import parse_nvidia_smi
from qmo.gpu import parse_capability
from tests.support.build_requests import A100, B200, H100, a_request

H100_CLASS = ("NVIDIA-H100-80GB-HBM3", "9.0")
A100_CLASS = ("NVIDIA-A100-SXM4-80GB", "8.0")
B200_CLASS = ("NVIDIA-B200", "10.0")


@pytest.mark.parametrize(
    ("precision", "kv", "gpu_class", "seen", "tp", "reason", "code", "says"),
    [
        pytest.param(
            "fp8", "fp8", H100_CLASS, [H100], 1, None, None, "", id="fp8 on an H100 builds"
        ),
        pytest.param(
            "int8", "int8", A100_CLASS, [A100], 1, None, None, "", id="int8 on an A100 builds"
        ),
        pytest.param(
            "int4-awq",
            "nvfp4",
            B200_CLASS,
            [B200],
            1,
            None,
            None,
            "",
            id="nvfp4 KV on a B200 builds",
        ),
        pytest.param(
            "fp8",
            "fp8",
            H100_CLASS,
            [A100],
            1,
            "GpuMismatch",
            ExitCode.GPU_MISMATCH,
            "scheduled on NVIDIA A100-SXM4-80GB (8.0): fp8 needs compute capability >= 8.9",
            id="an fp8 build scheduled on compute capability 8.0 is refused",
        ),
        pytest.param(
            "fp8",
            "bf16",
            A100_CLASS,
            [A100],
            1,
            "PrecisionUnsupported",
            ExitCode.INVALID_SPEC,
            "fp8 needs compute capability >= 8.9",
            id="an fp8 build for an A100 class is an invalid spec",
        ),
        pytest.param(
            "int4-awq",
            "nvfp4",
            H100_CLASS,
            [H100],
            1,
            "PrecisionUnsupported",
            ExitCode.INVALID_SPEC,
            "nvfp4 KV cache needs compute capability >= 10.0",
            id="nvfp4 KV needs Blackwell",
        ),
        pytest.param(
            "int8",
            "bf16",
            A100_CLASS,
            [H100],
            1,
            "GpuMismatch",
            ExitCode.GPU_MISMATCH,
            "build for NVIDIA-A100-SXM4-80GB (compute capability 8.0) scheduled on NVIDIA H100",
            id="an A100 build on an H100 is refused: engines are per GPU model",
        ),
        pytest.param(
            "fp8",
            "fp8",
            H100_CLASS,
            [],
            1,
            "NoGpuVisible",
            ExitCode.GPU_MISMATCH,
            "no NVIDIA GPU is visible",
            id="no GPU at all",
        ),
        pytest.param(
            "fp8",
            "fp8",
            H100_CLASS,
            [H100],
            2,
            "TooFewGpus",
            ExitCode.GPU_MISMATCH,
            "tensorParallel 2 needs 2 GPUs; 1 visible",
            id="fewer GPUs than tensor parallel",
        ),
        pytest.param(
            "fp8",
            "fp8",
            H100_CLASS,
            [H100, A100],
            2,
            "GpuMismatch",
            ExitCode.GPU_MISMATCH,
            "scheduled on NVIDIA A100",
            id="one odd GPU among several",
        ),
        pytest.param(
            "fp8",
            "fp8",
            ("NVIDIA-H100-80GB-HBM3", "9.0"),
            [SeenGpu("NVIDIA H100 PCIe", "9.0")],
            1,
            "GpuMismatch",
            ExitCode.GPU_MISMATCH,
            "NVIDIA H100 PCIe",
            id="same capability, another product",
        ),
    ],
)
def test_the_gpu_check_refuses_what_it_must(
    precision: str,
    kv: str,
    gpu_class: tuple[str, str],
    seen: list[SeenGpu],
    tp: int,
    reason: str | None,
    code: int | None,
    says: str,
) -> None:
    request = a_request().precision(precision, kv).on(*gpu_class).tensor_parallel(tp).build()
    found = refusal(request, seen)
    if reason is None:
        assert found is None
        return
    assert found is not None
    assert (found.reason, found.exit_code) == (reason, code)
    assert says in found.message


@pytest.mark.parametrize(
    ("low", "high"),
    [("9.0", "10.0"), ("8.9", "9.0"), ("8.6", "8.9"), ("10.0", "12.0"), ("8.0", "8.6")],
)
def test_compute_capabilities_compare_as_numbers_not_strings(low: str, high: str) -> None:
    assert parse_capability(low) < parse_capability(high)


@pytest.mark.parametrize("text", ["9", "nine", "9.0.1", ""])
def test_a_malformed_capability_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a compute capability"):
        parse_capability(text)


def test_a_malformed_expected_capability_is_an_invalid_spec() -> None:
    request = a_request().on("NVIDIA-H100-80GB-HBM3", "nine").build()
    found = refusal(request, [H100])
    assert found is not None
    assert found.exit_code == ExitCode.INVALID_SPEC


@pytest.mark.parametrize(
    ("label", "nvml"),
    [
        ("NVIDIA-H100-80GB-HBM3", "NVIDIA H100 80GB HBM3"),
        ("NVIDIA-A100-SXM4-80GB-SHARED", "NVIDIA A100-SXM4-80GB"),
        ("nvidia-l40s", "NVIDIA L40S"),
    ],
)
def test_feature_discovery_labels_match_nvml_product_names(label: str, nvml: str) -> None:
    assert normalize_product(label) == normalize_product(nvml)


def test_nvidia_smi_output_is_parsed_into_gpus() -> None:
    output = (
        "NVIDIA H100 80GB HBM3, 9.0, 81559, 580.159.04\nNVIDIA H100 80GB HBM3, 9.0, [N/A], \n\n"
    )
    gpus = parse_nvidia_smi(output)
    assert gpus == [
        SeenGpu("NVIDIA H100 80GB HBM3", "9.0", 81559, "580.159.04"),
        SeenGpu("NVIDIA H100 80GB HBM3", "9.0", None, None),
    ]


@pytest.mark.parametrize(
    ("seen", "accepted"),
    [
        ("NVIDIA A100 80GB PCIe", True),
        ("NVIDIA A100-SXM4-80GB", True),
        ("NVIDIA A100-SXM4-40GB", False),
        ("NVIDIA H100 80GB HBM3", False),
    ],
    ids=[
        "a PCIe A100 80GB runs a build for the class's canonical SXM4 label",
        "the canonical label itself runs it",
        "a 40GB A100 is another class",
        "an H100 is another class",
    ],
)
def test_a_build_runs_on_any_label_of_its_gpu_class(seen: str, accepted: bool) -> None:
    request = a_request().on("NVIDIA-A100-SXM4-80GB", "8.0").precision("int8", "int8").build()
    assert (refusal(request, [SeenGpu(seen, "8.0")]) is None) == accepted
