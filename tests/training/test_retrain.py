"""``erpx retrain``: the plan, a dry run that trains nothing, a run that trains and judges, and
unknown models refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp_core.settings import get_settings
from serving.cli import app
from training.retrain import TRAINERS

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
SMALL_SPLIT = ["--validation-days", "14", "--calibration-days", "14", "--test-days", "21"]


@pytest.fixture(autouse=True)
def tracking_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, training_world) -> Iterator[Path]:
    monkeypatch.setenv("ERPX_DATABASE_URL", training_world.url)
    monkeypatch.setenv("ERPX_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ERPX_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ERPX_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_without_champions_there_is_nothing_to_retrain_and_that_is_not_an_error():
    result = runner.invoke(app, ["retrain", *SMALL_SPLIT], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "nothing to retrain" in result.output


def test_a_dry_run_shows_the_plan_and_trains_nothing(tracking_in):
    result = runner.invoke(app, ["retrain", "--all", "--dry-run", *SMALL_SPLIT], env=WIDE)
    assert result.exit_code == 0, result.output
    for model in TRAINERS:
        assert f"would {model}: no champion; train a challenger on" in result.output
    assert not list((tracking_in / "mlartifacts").glob("**/model"))


def test_a_run_trains_a_challenger_judges_it_and_says_why():
    arguments = ["retrain", "--model", "late_shipment", "--model", "margin_anomaly"]
    result = runner.invoke(app, [*arguments, *SMALL_SPLIT], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "retrained late_shipment" in result.output
    assert "late_shipment v1" in result.output
    assert "no champion profile to compare with" in result.output
    assert "retrained margin_anomaly" in result.output
    assert "2 challenger(s) trained" in result.output


def test_an_unknown_model_is_refused_by_name_with_exit_code_2():
    result = runner.invoke(app, ["retrain", "--model", "crystal_ball", *SMALL_SPLIT], env=WIDE)
    assert result.exit_code == 2, result.output
    assert "crystal_ball" in result.output


def test_the_feedback_is_the_alert_precision_of_each_models_resolved_cases(
    world,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Two late-risk alerts resolved, one a false alarm: precision 50% over 2; a shortage a rule
    opened (no score) does not count; the margin model resolved nothing."""
    from datetime import timedelta

    from erp_core.services.exceptions import open_exception, resolve_exception
    from erp_core.settings import Settings
    from tests.conftest import ADMIN, LOGISTICS, PLANNER, T0
    from training.retrain import alert_feedback

    opened = []
    with world:
        for exception_type, score in (("late_risk", 0.6), ("late_risk", 0.7), ("shortage", None)):
            case = open_exception(world, ADMIN, T0, exception_type, score=score)
            opened.append((case.id, case.owner_role))
        world.commit()
    resolutions = ("false_alarm", "expedited", "re_sourced")
    for (case_id, owner), resolution in zip(opened, resolutions, strict=True):
        actor = LOGISTICS if owner == "logistics" else PLANNER if owner == "planner" else ADMIN
        resolve_exception(world, actor, case_id, resolution, T0 + timedelta(hours=2))
    url = world.engine.url.render_as_string(hide_password=False)
    found = {f.model: f for f in alert_feedback(Settings(database_url=url, var_dir=tmp_path))}
    assert (found["late_shipment"].precision, found["late_shipment"].resolved) == (0.5, 2)
    assert found["margin_anomaly"].precision is None
    assert "50% over 2" in found["late_shipment"].describe()
