"""Writing a frame: Parquet that reads back as written, a manifest that says what it is and where
it came from, and nothing at all when the frame fails its checks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import FrameInvalid, typed_frame
from features.store import describe_source, read_manifest, write_frame
from tests.features.test_schema import TINY, good_columns

START = datetime(2025, 1, 6, tzinfo=UTC)
END = datetime(2025, 2, 6, tzinfo=UTC)


def write(frame: pd.DataFrame, out: Path, url: str = "sqlite:///var/erpx.db"):
    return write_frame(frame, TINY, out, start=START, end=END, source_url=url)


def test_the_frame_reads_back_with_its_dtypes_and_the_manifest_describes_it(tmp_path: Path) -> None:
    frame = typed_frame(good_columns(), TINY)
    written = write(frame, tmp_path / "out")
    assert written.frame_path == tmp_path / "out" / "tiny.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(written.frame_path), frame)

    manifest = read_manifest(written.manifest_path)
    assert manifest["feature_set"] == "tiny"
    assert manifest["rows"] == 4
    assert manifest["window"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert [f["name"] for f in manifest["features"]] == ["rate", "flag", "tier", "maybe"]
    assert manifest["features"][3]["null_share"] == 0.5
    assert [label["name"] for label in manifest["labels"]] == ["label_late"]
    assert manifest["source_db"] == f"sqlite:///{Path('var/erpx.db').resolve()}"
    assert manifest["code_version"]["package"]
    digest = hashlib.sha256(written.frame_path.read_bytes()).hexdigest()
    assert manifest["frame_sha256"] == digest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "tiny.manifest.json",
        "tiny.parquet",
    ]


def test_the_manifest_never_holds_a_database_password() -> None:
    shown = describe_source("postgresql+psycopg://erpx:s3cret@db.example:5432/erp")
    assert "s3cret" not in shown
    assert "db.example" in shown


def test_a_frame_that_fails_validation_writes_nothing(tmp_path: Path) -> None:
    columns = good_columns()
    columns["rate"] = np.array([0.1, 2.0, 1.0, 0.0])
    with pytest.raises(FrameInvalid, match="rate: values above 1"):
        write(typed_frame(columns, TINY), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_refused_frame_leaves_the_previous_one_in_place(tmp_path: Path) -> None:
    first = write(typed_frame(good_columns(), TINY), tmp_path)
    before = first.frame_path.read_bytes()
    columns = good_columns()
    columns["flag"] = np.array([1, 0, 1, 0])
    with pytest.raises(FrameInvalid, match="flag: dtype int64, declared bool"):
        write(pd.DataFrame(columns).astype({"tier": "category"}), tmp_path)
    assert first.frame_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.manifest.json", "tiny.parquet"]


def test_the_manifest_lists_the_unavailable_features_with_their_reasons(tmp_path: Path) -> None:
    unavailable = {"tier": "no tier was imported", "flag": "the source does not record it"}
    frame = typed_frame(good_columns(), TINY, unavailable)
    written = write_frame(
        frame, TINY, tmp_path, start=START, end=END, source_url="sqlite://", unavailable=unavailable
    )
    pd.testing.assert_frame_equal(pd.read_parquet(written.frame_path), frame)
    manifest = read_manifest(written.manifest_path)
    assert manifest["manifest_version"] == 2
    assert manifest["unavailable_features"] == [  # in declared order
        {"name": "flag", "reason": "the source does not record it"},
        {"name": "tier", "reason": "no tier was imported"},
    ]
    entries = {entry["name"]: entry for entry in manifest["features"]}
    assert entries["flag"]["unavailable"] == "the source does not record it"
    assert entries["flag"]["null_share"] == 1.0
    assert "unavailable" not in entries["rate"]


def test_a_frame_with_values_in_a_feature_named_unavailable_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FrameInvalid, match="rate: unavailable but holds values"):
        write_frame(
            typed_frame(good_columns(), TINY),
            TINY,
            tmp_path / "out",
            start=START,
            end=END,
            source_url="sqlite://",
            unavailable={"rate": "not computable"},
        )
    assert not (tmp_path / "out").exists()
