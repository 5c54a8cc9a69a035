"""Reading qmo resources from YAML files (for `qmo validate`, `qmo plan` and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qmo.api.qualityreport import QualityReport
from qmo.api.quantizedmodel import QuantizedModel
from qmo.wire import json_type

Resource = QuantizedModel | QualityReport
_KINDS: dict[str, type[QuantizedModel] | type[QualityReport]] = {
    "QuantizedModel": QuantizedModel,
    "QualityReport": QualityReport,
}


class ManifestError(ValueError):
    """A file is not YAML, holds a document that is no object, or holds an object that is not
    a qmo resource."""


def parse_resource(document: dict[str, Any]) -> Resource:
    """Validate one object against the model of its kind (raises pydantic.ValidationError)."""
    kind = document.get("kind")
    model = _KINDS.get(str(kind))
    if model is None:
        raise ManifestError(f"kind {kind!r} is not a qmo resource (expected one of {list(_KINDS)})")
    return model.from_wire(document)


def load_resources(path: Path) -> list[Resource]:
    """Every qmo resource in a multi-document YAML file; other kinds (ConfigMaps...) are
    skipped. An unreadable file raises OSError; anything else wrong, ManifestError or
    pydantic's ValidationError."""
    text = path.read_text(encoding="utf-8")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as err:
        raise ManifestError(f"not valid YAML: {' '.join(str(err).split())}") from err
    for number, document in enumerate(documents, 1):
        if not isinstance(document, dict):
            raise ManifestError(
                f"document {number} is {json_type(document)}, not a Kubernetes object"
            )
    return [parse_resource(d) for d in documents if d.get("kind") in _KINDS]
