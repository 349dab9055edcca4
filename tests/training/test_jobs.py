"""The training job end to end against a real MLflow store: a run with its metrics, plots and
manifest, a registered version with the challenger alias, and the gate at work."""

import pytest
from mlflow import MlflowClient

from training import late_shipment as ls
from training import tracking
from training.jobs import train_late_shipment

from .conftest import PLAN


@pytest.fixture(scope="module")
def store(training_world, tmp_path_factory):
    return training_world.settings(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def first_run(store, calendar):
    return train_late_shipment(store, calendar, plan=PLAN, seed=7, promote=True)


def test_a_run_logs_scores_of_model_baselines_and_oracle_on_one_test_window(first_run, store):
    tracking.configure(store)
    metrics = tracking.run_metrics(first_run.run_id)
    for scorer in ("model", "lane_rate", "logistic", "oracle"):
        for score in ("roc_auc", "pr_auc", "brier", "ece", "recall_at_budget"):
            assert f"{scorer}_{score}" in metrics
        assert metrics[f"{scorer}_lines"] == first_run.rows["test"]
    assert metrics["auc_ratio_to_oracle"] == pytest.approx(first_run.auc_ratio)
    assert first_run.oracle_lines == first_run.rows["test"]


def test_a_run_logs_its_plots_manifest_and_model(first_run, store):
    tracking.configure(store)
    logged = {item.path for item in MlflowClient().list_artifacts(first_run.run_id)}
    assert {"calibration.png", "precision_recall.png", "lift.png"} <= logged
    assert {"feature_manifest.json", "test_scores.json", "gate.json"} <= logged


def test_a_run_on_erpx_own_history_leaves_no_feature_out_and_says_so(first_run, store):
    tracking.configure(store)
    run = MlflowClient().get_run(first_run.run_id)
    assert first_run.left_out == {}
    assert run.data.params["features.left_out"] == "none"
    assert run.data.params["features.used"] == str(len(ls.features()))
    assert not [tag for tag in run.data.tags if tag.startswith("feature_unavailable.")]


def test_the_new_version_is_registered_as_challenger(first_run, store):
    tracking.configure(store)
    challenger = tracking.version_by_alias(ls.REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger is not None
    assert challenger.version == first_run.version == "1"
    assert challenger.run_id == first_run.run_id


def test_the_first_version_is_promoted_only_if_it_beats_every_baseline(first_run, store):
    tracking.configure(store)
    beats = all(
        first_run.scores["model"].roc_auc > first_run.scores[b].roc_auc
        and first_run.scores["model"].pr_auc > first_run.scores[b].pr_auc
        for b in ("lane_rate", "logistic")
    )
    assert first_run.gate is not None
    assert first_run.gate.promote == beats
    champion = tracking.version_by_alias(ls.REGISTERED_NAME, tracking.CHAMPION)
    assert (champion is not None and champion.version == "1") == beats


def test_the_gate_refuses_a_worse_model_and_the_champion_keeps_its_alias(
    first_run, store, calendar
):
    tracking.configure(store)
    tracking.set_alias(ls.REGISTERED_NAME, tracking.CHAMPION, first_run.version)
    worse = train_late_shipment(
        store,
        calendar,
        plan=PLAN,
        seed=7,
        promote=True,
        # no leaf may hold fewer lines than exist: no split, one constant score (AUC 0.5)
        model_params={"n_estimators": 2, "min_child_samples": 10**9, "early_stopping_rounds": 1},
    )
    assert worse.gate is not None and not worse.gate.promote
    assert worse.gate.champion_version == first_run.version
    assert worse.scores["champion"].roc_auc == pytest.approx(first_run.scores["model"].roc_auc)
    champion = tracking.version_by_alias(ls.REGISTERED_NAME, tracking.CHAMPION)
    assert champion is not None and champion.version == first_run.version
    challenger = tracking.version_by_alias(ls.REGISTERED_NAME, tracking.CHALLENGER)
    assert challenger is not None and challenger.version == worse.version == "2"
    assert worse.drift is not None and worse.drift["against_champion_version"] == "1"
    assert set(worse.drift["features"]) == {spec.name for spec in ls.features()}
    assert worse.drift["features"]["customer_tier"] < 0.1  # same world, same window
    assert worse.drift["score"] == pytest.approx(0.0, abs=1e-9)  # the champion on its own test


def test_an_unknown_alias_is_refused_by_name(store):
    from erp_core.domain.errors import InvalidValue

    tracking.configure(store)
    with pytest.raises(InvalidValue, match="latest"):
        tracking.version_by_alias(ls.REGISTERED_NAME, "latest")


def test_the_ship_date_target_is_its_own_registered_model_with_its_own_baseline(store, calendar):
    result = train_late_shipment(store, calendar, plan=PLAN, seed=7, target="ship")
    assert result.registered_name == "late_shipment_ship"
    assert set(result.scores) == {"model", "location_rate", "logistic", "oracle"}
    tracking.configure(store)
    challenger = tracking.version_by_alias("late_shipment_ship", tracking.CHALLENGER)
    assert challenger is not None and challenger.run_id == result.run_id


def test_an_unknown_target_is_refused_before_anything_is_logged(store, calendar):
    from erp_core.domain.errors import InvalidValue

    with pytest.raises(InvalidValue, match="arrival"):
        train_late_shipment(store, calendar, plan=PLAN, target="arrival")
