"""The generated CRDs are structural, carry the CEL rules, and match what is committed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmo.api.crd import ALL_CRDS, QUANTIZED_MODEL, CrdSpec, build_crd, render_crd
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.api.schema import _api_models

ROOT = Path(__file__).parents[2]
ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum",
    "default", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "pattern", "format",
    "x-kubernetes-validations", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def schema_of(crd: CrdSpec) -> dict[str, Any]:
    version = build_crd(crd)["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("crd", ALL_CRDS, ids=lambda c: c.kind)
def test_schema_uses_only_structural_keywords(crd: CrdSpec) -> None:
    for path, node in walk(schema_of(crd)):
        unexpected = set(node) - ALLOWED_KEYS
        assert not unexpected, f"{crd.kind}{path} has {unexpected}"


@pytest.mark.parametrize("crd", ALL_CRDS, ids=lambda c: c.kind)
def test_every_node_has_a_type_or_is_int_or_string(crd: CrdSpec) -> None:
    for path, node in walk(schema_of(crd)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{crd.kind}{path}"


@pytest.mark.parametrize("crd", ALL_CRDS, ids=lambda c: c.kind)
def test_every_spec_and_status_field_is_described_for_kubectl_explain(crd: CrdSpec) -> None:
    schema = schema_of(crd)
    for part in ("spec", "status"):
        for path, node in walk(schema["properties"][part], part):
            if path.endswith(("[]", "{}")):
                continue
            assert node.get("description"), f"{crd.kind} {path} has no description"


@pytest.mark.parametrize("crd", ALL_CRDS, ids=lambda c: c.kind)
def test_no_references_or_titles_survive_generation(crd: CrdSpec) -> None:
    text = render_crd(crd)
    for word in ("$ref", "$defs", "title:", "anyOf", "allOf", "oneOf", "const:"):
        assert word not in text, f"{crd.kind} CRD contains {word}"


def test_every_cross_field_rule_is_emitted_as_cel() -> None:
    schema = schema_of(QUANTIZED_MODEL)
    emitted = {
        rule["rule"]
        for _, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    }
    declared = {rule.cel for model in _api_models(QuantizedModelSpec) for rule in model.rules}
    assert declared, "no rules declared"
    assert declared <= emitted


def test_quantized_model_crd_has_printer_columns_short_name_category_and_status() -> None:
    spec = build_crd(QUANTIZED_MODEL)["spec"]
    version = spec["versions"][0]
    assert spec["names"]["shortNames"] == ["qm"]
    assert spec["names"]["categories"] == ["qmo"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Precisions", "Ready", "Quality", "Serving", "Speedup", "Replicas", "Age"]


def test_defaults_reach_the_schema_so_the_api_server_fills_them_in() -> None:
    spec = schema_of(QUANTIZED_MODEL)["properties"]["spec"]["properties"]
    assert spec["precisions"]["default"] == ["auto"]
    assert spec["quality"]["default"]["maxRegressionPercent"] == 1.5
    assert spec["quality"]["properties"]["maxRegressionPercent"]["default"] == 1.5
    assert spec["quantization"]["properties"]["excludeModules"]["default"] == ["lm_head"]


def test_status_carries_no_defaults() -> None:
    status = schema_of(QUANTIZED_MODEL)["properties"]["status"]
    assert not [path for path, node in walk(status) if "default" in node]


@pytest.mark.parametrize("crd", ALL_CRDS, ids=lambda c: c.kind)
@pytest.mark.parametrize("directory", ["crds", "charts/qmo/crds"])
def test_committed_crds_are_current(crd: CrdSpec, directory: str) -> None:
    committed = ROOT / directory / crd.file_name
    assert committed.read_text(encoding="utf-8") == render_crd(crd), "run `make crds`"


def test_generation_is_deterministic() -> None:
    assert [render_crd(c) for c in ALL_CRDS] == [render_crd(c) for c in ALL_CRDS]
    assert yaml.safe_load(render_crd(QUANTIZED_MODEL).split("---\n", 1)[1])
