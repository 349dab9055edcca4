"""P(an order line misses its promised delivery date), for lines as capture decides them.

The champion scores from the online feature row (the same definitions as its training frame);
without one, the fallback is what a planner would read without a model: one minus the lane's
shrunk 90-day on-time delivery rate (the late-shipment model's own lane baseline). Either way the
answer says which it was and why, in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from erp_core.domain.errors import NotFound
from features.online import DraftOrder, OnlineFeatures
from serving.models import FALLBACK, ServedModel
from training.late_shipment import LANE_RATE_FEATURE
from training.reasons import Reason, phrase, reasons_of_rows

REASON_LIMIT = 3
TRANSIT_SPREAD_FEATURE = "lane_transit_spread_90d"
ACTION_FEATURES = (TRANSIT_SPREAD_FEATURE,)
"""The feature values the recommended actions read (the honest later date), kept also when a
score's feature values are not."""
FALLBACK_RATE_WHEN_UNKNOWN = 0.15
"""A lane with no history at all and no global rate yet (an empty database): a cautious prior."""


@dataclass(frozen=True)
class LateRisk:
    probability: float
    model: str
    version: str | None
    reasons: tuple[Reason, ...]
    features: dict[str, Any]
    """The feature values the score used, stored with it for the decision trail."""
    explained: bool = True
    """Whether the reasons were worked out (they are a large share of a score's cost, and a line far
    below the alert threshold needs none unless the caller asks for every line's)."""


def score_late_risk(
    online: OnlineFeatures | None,
    champion: ServedModel | None,
    draft: DraftOrder,
    contexts: list[dict[str, str]],
    explain_from: float = 0.0,
    keep_features: bool = True,
) -> list[LateRisk]:
    """One risk per draft line, in the draft's line order; the champion's reasons for the lines
    whose probability reaches ``explain_from`` (0: every line)."""
    if not draft.lines:
        return []
    if online is None:
        return [_unknown() for _ in draft.lines]
    try:
        values = online.feature_values(draft)
    except NotFound:
        # A customer, product or location created since the index's last refresh.
        online.refresh()
        values = online.feature_values(draft)
    if champion is None:
        return _fallback(values, contexts, keep_features)
    model = champion.estimator
    matrix = model.encoder_.transform_columns(values)
    scored = model.score_rows(matrix, explain_from, num_threads=1)
    probabilities, explained, contributions = (
        scored.probability,
        scored.explained,
        scored.contributions,
    )
    reasons: list[tuple[Reason, ...]] = [() for _ in probabilities]
    if len(explained):
        names = model.encoder_.names
        columns = {name: np.asarray(values[name], dtype=object)[explained] for name in names}
        found = reasons_of_rows(
            contributions,
            columns,
            names,
            REASON_LIMIT,
            [contexts[i] for i in explained],
        )
        for i, row_reasons in zip(explained, found, strict=True):
            reasons[i] = tuple(row_reasons)
    chosen = set(explained.tolist())
    return [
        LateRisk(
            probability=float(p),
            model=champion.name,
            version=champion.version,
            reasons=reasons[i],
            features=_row(values, i) if keep_features else _row(values, i, ACTION_FEATURES),
            explained=i in chosen,
        )
        for i, p in enumerate(probabilities)
    ]


def _fallback(
    values: dict[str, np.ndarray], contexts: list[dict[str, str]], keep_features: bool = True
) -> list[LateRisk]:
    on_time = pd.to_numeric(pd.Series(values[LANE_RATE_FEATURE]), errors="coerce").to_numpy(
        dtype=float
    )
    risks = []
    for i, rate in enumerate(on_time):
        known = not np.isnan(rate)
        probability = float(np.clip(1.0 - rate, 0.0, 1.0)) if known else FALLBACK_RATE_WHEN_UNKNOWN
        text = (
            phrase(LANE_RATE_FEATURE, float(rate), contexts[i])
            if known
            else ("no delivery history on this lane yet")
        )
        risks.append(
            LateRisk(
                probability=probability,
                model=FALLBACK,
                version=None,
                reasons=(Reason(LANE_RATE_FEATURE, float(rate) if known else None, 0.0, text),),
                features=_row(values, i) if keep_features else _row(values, i, ACTION_FEATURES),
            )
        )
    return risks


def _unknown() -> LateRisk:
    return LateRisk(
        probability=FALLBACK_RATE_WHEN_UNKNOWN,
        model=FALLBACK,
        version=None,
        reasons=(Reason("history", None, 0.0, "the feature index is not available"),),
        features={},
    )


def _row(
    values: dict[str, np.ndarray], i: int, names: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """One line's feature values (``names`` only, when given) as plain JSON values."""
    chosen = values if names is None else {name: values[name] for name in names if name in values}
    return {name: _plain(column[i]) for name, column in chosen.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    return value if isinstance(value, bool | int | float | str) else str(value)
