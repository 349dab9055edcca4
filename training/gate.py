"""The promotion gate: a challenger replaces the champion only when it is better on the same
newest test window, by a stated margin, and not worse calibrated.

With no champion yet, the first version is promoted only if it beats every baseline on ROC AUC
and PR AUC: a model that loses to the lane's own history should not reach the order desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from training.metrics import ClassifierScores


@dataclass(frozen=True)
class GateTerms:
    auc_margin: float
    """ROC AUC the challenger must add over the champion."""
    ece_tolerance: float
    """How much worse than the champion's the challenger's ECE may be (ECE is noisy)."""


Scores = TypeVar("Scores")


@dataclass(frozen=True)
class GateDecision(Generic[Scores]):
    """What a gate decided and on which scores; every model's gate returns one (its scores are
    the model's own kind: classifier, forecast or anomaly scores)."""

    promote: bool
    reason: str
    challenger: Scores | None
    champion: Scores | None
    champion_version: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "challenger": _record(self.challenger),
            "champion": _record(self.champion),
            "champion_version": self.champion_version,
        }


def _record(scores: Any) -> Any:
    """A score set in its fullest JSON form: ``as_json`` where a set has nested parts (the
    anomaly scores' recall by type), else ``as_dict``."""
    if scores is None:
        return None
    return scores.as_json() if hasattr(scores, "as_json") else scores.as_dict()


def judge(
    challenger: ClassifierScores,
    champion: ClassifierScores | None,
    champion_version: str | None,
    baselines: dict[str, ClassifierScores],
    terms: GateTerms,
) -> GateDecision:
    if champion is None:
        return _first_version(challenger, baselines)
    needed = champion.roc_auc + terms.auc_margin
    if challenger.roc_auc < needed:
        reason = (
            f"ROC AUC {challenger.roc_auc:.4f} does not beat champion v{champion_version}'s "
            f"{champion.roc_auc:.4f} by the margin {terms.auc_margin} (needs {needed:.4f})"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    if challenger.ece > champion.ece + terms.ece_tolerance:
        reason = (
            f"ECE {challenger.ece:.4f} is worse than champion v{champion_version}'s "
            f"{champion.ece:.4f} beyond the tolerance {terms.ece_tolerance}"
        )
        return GateDecision(False, reason, challenger, champion, champion_version)
    reason = (
        f"ROC AUC {challenger.roc_auc:.4f} beats champion v{champion_version}'s "
        f"{champion.roc_auc:.4f} by {challenger.roc_auc - champion.roc_auc:.4f} and ECE "
        f"{challenger.ece:.4f} is within {terms.ece_tolerance} of its {champion.ece:.4f}"
    )
    return GateDecision(True, reason, challenger, champion, champion_version)


def _first_version(
    challenger: ClassifierScores, baselines: dict[str, ClassifierScores]
) -> GateDecision:
    for name, baseline in baselines.items():
        if challenger.roc_auc <= baseline.roc_auc or challenger.pr_auc <= baseline.pr_auc:
            reason = (
                f"no champion yet, and the model does not beat baseline {name} "
                f"(ROC AUC {challenger.roc_auc:.4f} vs {baseline.roc_auc:.4f}, "
                f"PR AUC {challenger.pr_auc:.4f} vs {baseline.pr_auc:.4f})"
            )
            return GateDecision(False, reason, challenger, None, None)
    names = ", ".join(baselines)
    reason = f"no champion yet; the model beats every baseline ({names}) on ROC AUC and PR AUC"
    return GateDecision(True, reason, challenger, None, None)
