"""Writing a frame: Parquet beside a JSON manifest that says what the file is and where it came
from, written only after the frame passed its checks.

The manifest is what lets a training run months later say exactly what it learned from: the
feature list with dtypes, the window, the row count, the source database (password hidden) and
the code version that computed the values. Both files are written to temporary names and renamed
into place, so a crash leaves the previous frame or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import make_url

from features.registry import FeatureSet
from features.schema import validate_frame

MANIFEST_VERSION = 2
"""2: ``unavailable_features``, and an unavailable feature's entry carries its ``unavailable``
reason (its column is null, float64 whatever its declared dtype)."""


@dataclass(frozen=True)
class Manifest:
    manifest_version: int
    feature_set: str
    entity: str
    window: dict[str, str]
    """``start`` (inclusive) and ``end`` (exclusive), ISO 8601."""
    rows: int
    keys: list[dict[str, str]]
    features: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    source_db: str
    code_version: dict[str, str]
    built_at: str
    frame_file: str
    frame_sha256: str
    engine: str = "pandas"
    """What computed the frame: ``pandas`` or ``dask`` (the same values either way)."""
    unavailable_features: list[dict[str, str]] = field(default_factory=list)
    """The features the history could not compute (``name``, ``reason``), in declared order:
    null on every row (``features.availability``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WrittenFrame:
    frame_path: Path
    manifest_path: Path
    manifest: Manifest


def frame_paths(out_dir: Path, feature_set: FeatureSet) -> tuple[Path, Path]:
    """Where a set's frame and manifest go: ``<out>/<set>.parquet`` and
    ``<out>/<set>.manifest.json``."""
    return out_dir / f"{feature_set.name}.parquet", out_dir / f"{feature_set.name}.manifest.json"


def write_frame(
    frame: pd.DataFrame,
    feature_set: FeatureSet,
    out_dir: Path,
    *,
    start: datetime,
    end: datetime,
    source_url: str,
    engine: str = "pandas",
    unavailable: Mapping[str, str] | None = None,
) -> WrittenFrame:
    """Validate ``frame`` (raising ``FrameInvalid``, nothing written), then write it and its
    manifest into ``out_dir``. ``unavailable``: the features it holds as nulls, with why."""
    unavailable = dict(unavailable or {})
    validate_frame(frame, feature_set, unavailable)
    frame_path, manifest_path = frame_paths(out_dir, feature_set)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = frame_path.with_name(f".{frame_path.name}.tmp")
    staged_manifest = manifest_path.with_name(f".{manifest_path.name}.tmp")
    try:
        frame.to_parquet(staged, index=False, engine="pyarrow")
        manifest = _manifest(frame, feature_set, start, end, source_url, frame_path, staged)
        manifest = replace(
            manifest,
            engine=engine,
            features=[_marked(entry, unavailable) for entry in manifest.features],
            unavailable_features=[
                {"name": name, "reason": unavailable[name]}
                for name in feature_set.feature_names
                if name in unavailable
            ],
        )
        staged_manifest.write_text(json.dumps(manifest.as_dict(), indent=2) + "\n", "utf-8")
        os.replace(staged, frame_path)
        os.replace(staged_manifest, manifest_path)
    finally:
        staged.unlink(missing_ok=True)
        staged_manifest.unlink(missing_ok=True)
    return WrittenFrame(frame_path, manifest_path, manifest)


def _manifest(
    frame: pd.DataFrame,
    feature_set: FeatureSet,
    start: datetime,
    end: datetime,
    source_url: str,
    frame_path: Path,
    staged: Path,
) -> Manifest:
    return Manifest(
        manifest_version=MANIFEST_VERSION,
        feature_set=feature_set.name,
        entity=feature_set.entity,
        window={"start": start.isoformat(), "end": end.isoformat()},
        rows=len(frame),
        keys=[{"name": k.name, "dtype": k.dtype} for k in feature_set.keys],
        features=[_described(frame, spec) for spec in feature_set.features],
        labels=[_described(frame, spec) for spec in feature_set.labels],
        source_db=describe_source(source_url),
        code_version=code_version(),
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        frame_file=frame_path.name,
        frame_sha256=_sha256(staged),
    )


def read_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return manifest


def _described(frame: pd.DataFrame, spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dtype": spec.dtype,
        "description": spec.description,
        "null_share": round(float(frame[spec.name].isna().mean()), 6) if len(frame) else 0.0,
        **({"group": spec.group} if hasattr(spec, "group") else {}),
    }


def _marked(entry: dict[str, Any], unavailable: Mapping[str, str]) -> dict[str, Any]:
    reason = unavailable.get(entry["name"])
    return entry if reason is None else {**entry, "unavailable": reason}


def describe_source(url: str) -> str:
    """The SQLite file as an absolute path; any other URL with its password hidden."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(str(parsed.database)).resolve()}"
    return parsed.render_as_string(hide_password=True)


def code_version() -> dict[str, str]:
    """The package version, and ``git describe`` of the checkout when there is one."""
    version = {"package": _package_version()}
    described = _git_describe()
    if described:
        version["git"] = described
    return version


def _package_version() -> str:
    try:
        return metadata.version("erpx")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_describe() -> str | None:
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
