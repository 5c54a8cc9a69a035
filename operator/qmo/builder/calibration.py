"""Calibration text for ModelOpt: a JSONL file, a mounted dataset, or a hub dataset.

`quantization.calibration.dataset` is read as:
- `store:///calib/data.jsonl` -> a file on the engine store (mounted at /store);
- an absolute path (or file://) -> a JSONL file with a 'text' field per line, or a mounted
  directory of such files, or a `datasets.save_to_disk` directory;
- anything else -> a Hugging Face dataset name (default cnn_dailymail), which needs the hub.
When none of these can be read the build fails with CalibrationDataUnavailable and says what
to do. Called by qmo.builder.pipeline.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from qmo.api.buildcontract import STORE_MOUNT_PATH
from qmo.builder.errors import CalibrationUnavailable

STORE_SCHEME = "store://"
TEXT_FIELD = "text"
# Hub datasets whose text is not in a 'text' column: name -> (dataset, config, field).
KNOWN_HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    "cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0", "article"),
    "abisee/cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0", "article"),
}
LOCAL_HINT = (
    "put a JSONL file with a 'text' field on the engine store and set "
    "quantization.calibration.dataset: store:///calib/data.jsonl"
)


@dataclass(frozen=True)
class CalibrationSource:
    kind: str  # file | directory | hub
    location: str  # path or dataset name


def resolve(dataset: str, *, store_root: Path = Path(STORE_MOUNT_PATH)) -> CalibrationSource:
    """Where the calibration text comes from (no I/O beyond looking at the path)."""
    if dataset.startswith(STORE_SCHEME):
        path = store_root / dataset.removeprefix(STORE_SCHEME).lstrip("/")
    elif dataset.startswith("file://"):
        path = Path(dataset.removeprefix("file://"))
    elif dataset.startswith("/"):
        path = Path(dataset)
    else:
        return CalibrationSource("hub", dataset)
    return CalibrationSource("directory" if path.is_dir() else "file", str(path))


def load_texts(source: CalibrationSource, samples: int, *, token: str | None = None) -> list[str]:
    """At most `samples` non-empty texts; fewer only when the data has fewer."""
    if source.kind == "hub":
        texts = list(islice(_hub_texts(source.location, token), samples))
    elif source.kind == "directory":
        texts = list(islice(_directory_texts(Path(source.location)), samples))
    else:
        texts = list(islice(_jsonl_texts(Path(source.location)), samples))
    if not texts:
        raise CalibrationUnavailable(f"calibration data {source.location} holds no text")
    return texts


def _jsonl_texts(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise CalibrationUnavailable(f"calibration file {path} does not exist; {LOCAL_HINT}")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CalibrationUnavailable(f"{path}:{number} is not JSON: {err.msg}") from err
            text = row.get(TEXT_FIELD) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise CalibrationUnavailable(f"{path}:{number} has no string '{TEXT_FIELD}' field")
            if text.strip():
                yield text


def _directory_texts(path: Path) -> Iterator[str]:
    files = sorted(path.glob("*.jsonl"))
    if files:
        for file in files:
            yield from _jsonl_texts(file)
        return
    if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
        datasets = _datasets_module(str(path))
        loaded = datasets.load_from_disk(str(path))
        split = loaded["train"] if hasattr(loaded, "keys") and "train" in loaded else loaded
        yield from _column(split, _text_column(split.column_names, str(path)))
        return
    raise CalibrationUnavailable(
        f"calibration directory {path} holds neither *.jsonl files nor a saved dataset"
    )


def _hub_texts(name: str, token: str | None) -> Iterator[str]:
    dataset, config, field = KNOWN_HUB_DATASETS.get(name, (name, None, TEXT_FIELD))
    datasets = _datasets_module(name)
    try:
        stream = datasets.load_dataset(dataset, config, split="train", streaming=True, token=token)
        yield from _column(stream, field)
    except CalibrationUnavailable:
        raise
    except Exception as err:
        raise CalibrationUnavailable(
            f"calibration dataset {name!r} needs the Hugging Face hub, which did not answer "
            f"({type(err).__name__}); {LOCAL_HINT}"
        ) from err


def _datasets_module(what: str) -> Any:
    try:
        return importlib.import_module("datasets")
    except ImportError as err:
        raise CalibrationUnavailable(
            f"calibration dataset {what!r} needs the `datasets` package, which this image "
            f"lacks; {LOCAL_HINT}"
        ) from err


def _text_column(columns: Iterable[str], where: str) -> str:
    names = list(columns)
    for candidate in (TEXT_FIELD, "article", "content"):
        if candidate in names:
            return candidate
    raise CalibrationUnavailable(f"dataset {where} has no text column (columns: {names})")


def _column(rows: Iterable[Any], field: str) -> Iterator[str]:
    for row in rows:
        value = row.get(field) if isinstance(row, dict) else None
        if isinstance(value, str) and value.strip():
            yield value
