"""Calibration text comes from a JSONL file, a mounted dataset or the hub, or a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmo.builder import calibration
from qmo.builder.errors import CalibrationUnavailable


@pytest.mark.parametrize(
    ("dataset", "kind", "location"),
    [
        ("cnn_dailymail", "hub", "cnn_dailymail"),
        ("store:///calib/data.jsonl", "file", "/store/calib/data.jsonl"),
        ("/data/calib.jsonl", "file", "/data/calib.jsonl"),
        ("file:///data/calib.jsonl", "file", "/data/calib.jsonl"),
    ],
)
def test_dataset_strings_resolve_to_their_source(dataset: str, kind: str, location: str) -> None:
    found = calibration.resolve(dataset, store_root=Path("/store"))
    assert (found.kind, found.location) == (kind, location)


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_a_jsonl_file_gives_at_most_the_requested_samples(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"text": f"t{i}"} for i in range(10)] + [{"text": " "}])
    texts = calibration.load_texts(calibration.resolve(str(path)), 4)
    assert texts == ["t0", "t1", "t2", "t3"]


def test_a_mounted_directory_of_jsonl_files_is_read_in_order(tmp_path: Path) -> None:
    _jsonl(tmp_path / "b.jsonl", [{"text": "second"}])
    _jsonl(tmp_path / "a.jsonl", [{"text": "first"}])
    found = calibration.resolve(str(tmp_path))
    assert found.kind == "directory"
    assert calibration.load_texts(found, 10) == ["first", "second"]


def test_a_store_path_is_read_under_the_store_root(tmp_path: Path) -> None:
    (tmp_path / "calib").mkdir()
    _jsonl(tmp_path / "calib" / "d.jsonl", [{"text": "x"}])
    found = calibration.resolve("store:///calib/d.jsonl", store_root=tmp_path)
    assert calibration.load_texts(found, 1) == ["x"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        pytest.param([{"content": "x"}], "has no string 'text' field", id="no text field"),
        pytest.param([{"text": 3}], "has no string 'text' field", id="text not a string"),
        pytest.param([{"text": "  "}], "holds no text", id="only blank text"),
    ],
)
def test_bad_jsonl_is_reported_with_file_and_line(
    tmp_path: Path, rows: list[object], message: str
) -> None:
    path = _jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(CalibrationUnavailable, match=message):
        calibration.load_texts(calibration.resolve(str(path)), 4)


def test_a_line_that_is_not_json_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(CalibrationUnavailable, match=r"c.jsonl:2 is not JSON"):
        calibration.load_texts(calibration.resolve(str(path)), 4)


def test_a_missing_file_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(CalibrationUnavailable, match=r"store:///calib/data\.jsonl"):
        calibration.load_texts(calibration.resolve(str(tmp_path / "absent.jsonl")), 4)


def test_a_directory_without_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CalibrationUnavailable, match="neither"):
        calibration.load_texts(calibration.resolve(str(tmp_path)), 4)


def test_a_hub_dataset_without_the_datasets_package_says_what_to_do_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_datasets(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(calibration.importlib, "import_module", no_datasets)
    with pytest.raises(CalibrationUnavailable) as raised:
        calibration.load_texts(calibration.resolve("cnn_dailymail"), 4)
    assert "needs the `datasets` package" in raised.value.message
    assert "store:///calib/data.jsonl" in raised.value.message


class UnreachableHub:
    def load_dataset(self, *args: object, **kwargs: object) -> object:
        raise ConnectionError("Temporary failure in name resolution")


class ReachableHub:
    def __init__(self) -> None:
        self.args: tuple[object, ...] = ()

    def load_dataset(self, *args: object, **kwargs: object) -> object:
        self.args = args
        return iter([{"article": "a"}, {"article": ""}, {"article": "b"}, {"article": "c"}])


def test_an_unreachable_hub_says_the_hub_did_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration.importlib, "import_module", lambda _name: UnreachableHub())
    with pytest.raises(CalibrationUnavailable, match="needs the Hugging Face hub, which did not"):
        calibration.load_texts(calibration.resolve("cnn_dailymail"), 4)


def test_cnn_dailymail_is_read_from_its_article_column(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = ReachableHub()
    monkeypatch.setattr(calibration.importlib, "import_module", lambda _name: hub)
    assert calibration.load_texts(calibration.resolve("cnn_dailymail"), 2) == ["a", "b"]
    assert hub.args == ("abisee/cnn_dailymail", "3.0.0")
