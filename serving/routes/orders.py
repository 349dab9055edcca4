"""Orders: score a draft while the customer waits, capture it with its exceptions, read it back.

The scoring routes are ``async`` and run their few milliseconds of work inline on the event
loop: the feature index and the models are then only ever touched from one thread, and a request
does not pay a thread-pool hand-off (see serving/runtime.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from erp_core.db.models import ExceptionCase, OrderLine, SalesOrder
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.policy import Actor, Policy
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order
from erp_core.services.quotes import OrderQuote, quote_order
from erp_core.services.risk import LineScore, record_scores
from erp_core.services.stock import current_promises, first_promises
from erp_core.services.trail import decision_trail
from serving.lines import OrderView
from serving.metrics import Metrics, MetricsDep
from serving.models import ModelSet
from serving.routes import EntityId
from serving.runtime import Runtime
from serving.schemas import (
    ActionOut,
    CapturedOrderOut,
    DraftOrderIn,
    LateRiskOut,
    MarginOut,
    OrderIn,
    OrderLineOut,
    OrderOut,
    OrderRiskOut,
    ReasonOut,
    ScoredLineOut,
    ScoredOrderOut,
)
from serving.scoring import ScoredLine, ScoredOrder, needing_actions, score_order, with_actions
from serving.security import ANY_ROLE, RuntimeDep, admits
from serving.views import view_of_order, view_of_quote

router = APIRouter(prefix="/v1/orders", tags=["orders"])
log = logging.getLogger("erpx.serving")


def _check_size(runtime: Runtime, body: DraftOrderIn) -> None:
    limit = runtime.settings.max_order_lines
    if len(body.lines) > limit:
        raise InvalidValue("lines", len(body.lines), f"an order may carry at most {limit} lines")


def _requests(body: DraftOrderIn) -> list[LineRequest]:
    return [LineRequest(line.sku, line.quantity, line.unit_price) for line in body.lines]


Explain = Annotated[
    Literal["risky", "all"],
    Query(
        description="Reasons for the lines at least half as risky as the alert threshold "
        "(risky, the default: most of a score's cost is working out reasons), or for all."
    ),
]


def _score(
    runtime: Runtime,
    view: OrderView,
    metrics: Metrics,
    explain: str = "risky",
    *,
    kept: bool = False,
    actions: bool = True,
) -> ScoredOrder:
    """Score the order; ``kept`` scores are stored with the feature values they used (a
    draft's and a rescore's are not, so they skip building them). Without ``actions``, the
    lines get none yet (see ``score_draft``)."""
    online = runtime.features()  # first: a due refresh covers the pricing index too
    scored = score_order(
        view,
        online,
        runtime.models,
        runtime.policy,
        runtime.pricing,
        explain == "all",
        keep_features=kept,
        actions=actions,
    )
    for line in scored.lines:
        if line.late is not None:
            fallback = line.late.version is None
            metrics.observe_score("late_shipment", line.late.model, line.late.probability, fallback)
        if line.margin is not None:
            fallback = line.margin.version is None
            metrics.observe_score("margin_anomaly", line.margin.model, line.margin.score, fallback)
    return scored


def _quote(
    runtime: Runtime,
    body: DraftOrderIn,
    actor: Actor,
    options_for: Callable[[OrderQuote], Collection[int]] | None = None,
) -> OrderQuote:
    return quote_order(
        runtime.reader(),
        customer_id=body.customer_id,
        lines=_requests(body),
        now=runtime.now(),
        requested_date=body.requested_date,
        channel=body.channel,
        ship_to_region=body.ship_to_region,
        allow_split=body.allow_split,
        actor=actor,
        options_for=options_for,
    )


@router.post(
    "/score",
    response_model=ScoredOrderOut,
    summary="Score a draft order without writing anything",
)
async def score_draft(
    body: DraftOrderIn,
    runtime: RuntimeDep,
    metrics: MetricsDep,
    actor: Annotated[Actor, Depends(admits("capture_order"))],
    explain: Explain = "risky",
) -> Response:
    """Per line: where and when capture would promise it (available-to-promise), P(late) with
    the reasons pushing it up, the margin-anomaly score with its reason, and for a line at risk
    the actions that could save it. Nothing is written: the same order captured a moment later
    gets the same promises unless someone else took the stock in between.

    Only the actions read a line's alternatives (other locations, express, substitutes), and
    only a line at risk gets actions, so the quote is two-phase: the lines are promised and
    scored first, and the alternatives are worked out, in the same read, for the lines at risk
    alone. Their actions are the ones a quote with every line's alternatives gives."""
    _check_size(runtime, body)
    now = runtime.now()
    first: list[ScoredOrder] = []

    def lines_at_risk(quote: OrderQuote) -> list[int]:
        scored = _score(runtime, view_of_quote(quote, now), metrics, explain, actions=False)
        first.append(scored)
        return needing_actions(scored, runtime.policy)

    quote = _quote(runtime, body, actor, options_for=lines_at_risk)
    scored = with_actions(first[0], view_of_quote(quote, now), runtime.policy)
    return _json(ScoredOrderOut(**_scored_fields(scored, now, runtime.policy)))


def _json(answer: BaseModel) -> Response:
    """The answer built (and so validated) as its response model, serialised once by pydantic.
    Returned as the model, FastAPI would validate it again and serialise it in two passes (to
    Python values, then ``json.dumps``): a third of a millisecond of a 10-line score."""
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post(
    "",
    response_model=CapturedOrderOut,
    status_code=201,
    summary="Capture an order, score it and open its exceptions",
)
async def capture(
    body: OrderIn,
    runtime: RuntimeDep,
    metrics: MetricsDep,
    actor: Annotated[Actor, Depends(admits("capture_order"))],
    background: BackgroundTasks,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> CapturedOrderOut:
    """The order is captured through the ERP core in one transaction (priced, credit-checked,
    promised, reserved or backordered). Then each line is scored and the scores kept; a line
    over the policy's thresholds opens a ``late_risk`` or ``margin_anomaly`` case routed to its
    owner role. With an ``Idempotency-Key`` a retry returns the first answer and creates
    nothing twice, also when the first attempt failed between capture and scoring."""
    _check_size(runtime, body)
    now = runtime.now()
    quote = _quote(runtime, body, actor)
    captured = capture_order(
        runtime.uow(),
        actor,
        customer_id=body.customer_id,
        lines=_requests(body),
        now=now,
        requested_date=body.requested_date,
        channel=body.channel,
        ship_to_region=body.ship_to_region,
        allow_split=body.allow_split,
        idempotency_key=idempotency_key,
        external_ref=body.external_ref,
    )
    with runtime.reader() as uow:
        view = view_of_order(uow, captured.order_id, quote=quote)
    scored = _score(runtime, view, metrics, kept=True)
    recorded = record_scores(
        runtime.uow(),
        actor,
        order_id=captured.order_id,
        scores=_line_scores(scored),
        purpose="capture",
        now=now,
    )
    if runtime.models.challengers and not recorded.already_recorded:
        background.add_task(_shadow, runtime, view, actor, now)
    return CapturedOrderOut(
        **_scored_fields(scored, view.entered_at, runtime.policy),
        order_id=captured.order_id,
        replayed=captured.replayed,
        exception_ids=_exception_ids(runtime, captured),
        approval_ids=list(captured.approval_ids),
    )


async def _shadow(runtime: Runtime, view: OrderView, actor: Actor, now: Any) -> None:
    """Score the captured order again with each challenger, after the answer has gone out, and
    keep those scores beside the champion's (``purpose="shadow"``, never opening a case): a
    challenger is judged on live traffic before anyone promotes it. Drafts write nothing, so
    only captured orders are shadow-scored."""
    challengers = runtime.models.challengers
    try:
        scored = score_order(
            view,
            runtime.features(),
            ModelSet(champions=dict(challengers)),
            runtime.policy,
            runtime.pricing,
        )
        scores = [s for s in _line_scores(scored) if s.model_name in challengers]
        if scores:
            record_scores(
                runtime.uow(),
                actor,
                order_id=view.order_id,
                scores=scores,
                purpose="shadow",
                now=now,
            )
    except Exception as error:  # a challenger must never break the champion's path
        log.warning("shadow scoring of order %s failed: %s", view.order_id, error)


def _exception_ids(runtime: Runtime, captured: CapturedOrder) -> list[int]:
    """Every case the order opened: capture's own (shortage, credit hold, discount approval)
    and the scores' (late risk, margin anomaly), as the database holds them (a replay too)."""
    with runtime.reader() as uow:
        return list(
            uow.session.scalars(
                select(ExceptionCase.id)
                .where(ExceptionCase.order_id == captured.order_id)
                .order_by(ExceptionCase.id)
            )
        )


def _line_scores(scored: ScoredOrder) -> list[LineScore]:
    scores = []
    for line in scored.lines:
        line_id = line.line.line_id
        assert line_id is not None, "a captured order's lines have ids"
        if line.late is not None:
            scores.append(
                LineScore(
                    line_id=line_id,
                    kind="late_shipment",
                    model_name=line.late.model,
                    model_version=line.late.version or line.late.model,
                    score=line.late.probability,
                    reasons=[reason.text for reason in line.late.reasons],
                    features=line.late.features,
                )
            )
        if line.margin is not None:
            scores.append(
                LineScore(
                    line_id=line_id,
                    kind="margin_anomaly",
                    model_name=line.margin.model,
                    model_version=line.margin.version or line.margin.model,
                    score=line.margin.score,
                    reasons=[line.margin.reason] if line.margin.reason else [],
                )
            )
    return scores


def _scored_fields(scored: ScoredOrder, scored_at: Any, policy: Policy) -> dict[str, Any]:
    return {
        "customer_id": scored.order.customer_id,
        "scored_at": scored_at,
        "models": scored.models,
        "order": OrderRiskOut(**scored.order_risk()),
        "lines": [_line_out(line, policy) for line in scored.lines],
    }


def _line_out(scored_line: ScoredLine, policy: Policy) -> ScoredLineOut:
    line, late, margin = scored_line.line, scored_line.late, scored_line.margin
    return ScoredLineOut(
        line_no=line.line_no,
        line_id=line.line_id,
        sku=line.sku,
        quantity=line.quantity,
        unit_price=str(line.unit_price),
        state=line.state,
        location_id=line.location_id,
        carrier_id=line.carrier_id,
        promised_ship_date=line.promised_ship_date,
        promised_delivery_date=line.promised_delivery_date,
        expected_ready_on=line.expected_ready_on,
        parent_line_no=line.parent_line_no,
        price_approval_pending=line.price_approval_pending,
        late_risk=None
        if late is None
        else LateRiskOut(
            probability=round(late.probability, 6),
            model=late.model,
            version=late.version,
            over_threshold=late.probability >= policy.late_risk_probability,
            reasons=[ReasonOut(**reason.as_dict()) for reason in late.reasons],
            explained=late.explained,
        ),
        margin=None
        if margin is None
        else MarginOut(
            score=margin.score,
            model=margin.model,
            version=margin.version,
            over_threshold=margin.score >= policy.margin_anomaly_score,
            reason=margin.reason,
        ),
        actions=[
            ActionOut(kind=action.kind, text=action.text, details=action.details)  # type: ignore[arg-type]
            for action in scored_line.actions
        ],
    )


@router.get("/{order_id}", response_model=OrderOut, summary="An order with its lines and promises")
def get_order(
    order_id: EntityId,
    runtime: RuntimeDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
) -> OrderOut:
    with runtime.reader() as uow:
        order = uow.session.get(SalesOrder, order_id)
        if order is None:
            raise NotFound("order", "order_id", order_id)
        lines = list(
            uow.session.scalars(
                select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
            )
        )
        ids = [line.id for line in lines]
        first, current = first_promises(uow, ids), current_promises(uow, ids)
        return OrderOut(
            order_id=order.id,
            customer_id=order.customer_id,
            channel=order.channel,
            ship_to_region=order.ship_to_region,
            entered_at=order.entered_at,
            requested_date=order.requested_date,
            external_ref=order.external_ref,
            lines=[_order_line(line, first.get(line.id), current.get(line.id)) for line in lines],
        )


def _order_line(line: OrderLine, first: Any, current: Any) -> OrderLineOut:
    return OrderLineOut(
        line_id=line.id,
        line_no=line.line_no,
        sku=line.sku,
        quantity=line.quantity,
        state=line.state,
        location_id=line.location_id,
        unit_price=str(line.unit_price),
        first_promised_ship_date=first.promised_ship_date if first else None,
        first_promised_delivery_date=first.promised_delivery_date if first else None,
        promised_ship_date=current.promised_ship_date if current else None,
        promised_delivery_date=current.promised_delivery_date if current else None,
        parent_line_id=line.parent_line_id,
    )


@router.get(
    "/{order_id}/risk",
    response_model=ScoredOrderOut,
    summary="Rescore an order's open lines against the current state",
)
async def rescore(
    order_id: EntityId,
    runtime: RuntimeDep,
    metrics: MetricsDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
    explain: Explain = "risky",
) -> Response:
    """The open lines as they stand now (their current promise, location and state), with the
    features as of now; lines shipped, delivered or cancelled have nothing left to predict."""
    now = runtime.now()
    with runtime.reader() as uow:
        view = view_of_order(uow, order_id, as_of=now, open_only=True)
    scored = _score(runtime, view, metrics, explain)
    return _json(ScoredOrderOut(**_scored_fields(scored, now, runtime.policy)))


@router.get(
    "/{order_id}/trail",
    summary="The decision trail: scores, exceptions, resolutions, approvals, outcome",
)
def trail(
    order_id: EntityId,
    runtime: RuntimeDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
    features: bool = True,
) -> dict[str, Any]:
    """Per line: every score (model and version or fallback, reasons, the feature values used),
    the cases it opened and how they were worked, approvals linked to them, and whether the line
    arrived by its first promised date once delivered."""
    return decision_trail(runtime.reader(), order_id, with_features=features)
