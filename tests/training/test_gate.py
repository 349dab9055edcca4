from training.gate import GateTerms, judge
from training.metrics import ClassifierScores

TERMS = GateTerms(auc_margin=0.002, ece_tolerance=0.005)


def scores(auc: float, pr: float = 0.3, ece: float = 0.01) -> ClassifierScores:
    return ClassifierScores(1000, 150, auc, pr, 0.1, ece, 0.3)


def test_a_challenger_better_by_the_margin_and_as_calibrated_is_promoted():
    decision = judge(scores(0.75), scores(0.74), "3", {}, TERMS)
    assert decision.promote
    assert "v3" in decision.reason


def test_a_challenger_better_by_less_than_the_margin_is_refused():
    decision = judge(scores(0.7415), scores(0.74), "3", {}, TERMS)
    assert not decision.promote
    assert "margin" in decision.reason


def test_a_worse_challenger_is_refused():
    assert not judge(scores(0.70), scores(0.74), "3", {}, TERMS).promote


def test_a_better_ranked_but_worse_calibrated_challenger_is_refused():
    decision = judge(scores(0.76, ece=0.03), scores(0.74, ece=0.01), "3", {}, TERMS)
    assert not decision.promote
    assert "ECE" in decision.reason


def test_the_first_version_needs_to_beat_every_baseline():
    baselines = {"lane_rate": scores(0.60, pr=0.20), "logistic": scores(0.66, pr=0.25)}
    assert judge(scores(0.70, pr=0.30), None, None, baselines, TERMS).promote
    refused = judge(scores(0.65, pr=0.30), None, None, baselines, TERMS)
    assert not refused.promote
    assert "logistic" in refused.reason
