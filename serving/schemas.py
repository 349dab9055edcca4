"""The API's request and response bodies, one family per resource, apart from the ORM and domain
classes. Inputs are strict where a clerk's typo would otherwise be guessed at (a quantity of
"5" or 2.5 is refused, not rounded); every model forbids fields it does not know, so a misspelt
field is a 422 naming it rather than silently ignored.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TEXT = 64
MAX_CHANNEL = 32
"""A channel is stored in 32 characters (sales_orders.channel)."""
MAX_NOTE = 400
MAX_QUANTITY = 1_000_000
MAX_PRICE = Decimal("1000000000")

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters (NUL, newline, escape, ...): never part of a code or a reference, and a
NUL cannot be stored in a PostgreSQL text column at all."""
NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""The same, less tab and line breaks, which a free-text note may carry."""


def _refuse(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(text: str) -> str:
        found = pattern.search(text)
        if found is not None:
            raise ValueError(f"{what} may not contain the control character {found.group()!r}")
        return text

    return AfterValidator(check)


Text = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT), _refuse(CONTROL, "a code or reference")
]
Channel = Annotated[
    str, Field(min_length=1, max_length=MAX_CHANNEL), _refuse(CONTROL, "a code or reference")
]
Note = Annotated[str, Field(max_length=MAX_NOTE), _refuse(NOTE_CONTROL, "a note")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftLineIn(_In):
    sku: Text = Field(examples=["SKU-0001"])
    quantity: Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY, examples=[12])]
    unit_price: Annotated[
        Decimal | None,
        Field(
            default=None,
            gt=0,
            le=MAX_PRICE,
            max_digits=16,
            decimal_places=4,
            description="A negotiated unit price; omitted, the customer's tier price is used.",
            examples=["9.50"],
        ),
    ] = None


class DraftOrderIn(_In):
    customer_id: Text = Field(examples=["CUST-0001"])
    lines: list[DraftLineIn] = Field(min_length=1)
    requested_date: date | None = Field(
        default=None, description="The delivery date the customer asked for (YYYY-MM-DD)."
    )
    channel: Channel | None = Field(default=None, examples=["edi"])
    ship_to_region: Text | None = None
    allow_split: bool = True

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "CUST-0001",
                    "requested_date": "2026-03-10",
                    "lines": [
                        {"sku": "SKU-0001", "quantity": 12},
                        {"sku": "SKU-0002", "quantity": 3, "unit_price": "41.50"},
                    ],
                }
            ]
        },
    )


class OrderIn(DraftOrderIn):
    external_ref: Text | None = Field(
        default=None, description="The order-entry system's own order number."
    )


class ReasonOut(BaseModel):
    feature: str
    value: Any
    contribution: float
    text: str


class LateRiskOut(BaseModel):
    probability: float
    model: str = Field(description="The model's registered name, or 'fallback'.")
    version: str | None
    over_threshold: bool
    reasons: list[ReasonOut]
    explained: bool = Field(
        description="Whether the reasons were worked out: by default for lines at least half "
        "as risky as the alert threshold, for every line with ?explain=all."
    )


class MarginOut(BaseModel):
    score: float
    model: str
    version: str | None
    over_threshold: bool
    reason: str | None


class ActionOut(BaseModel):
    kind: Literal["alternative_location", "split", "expedite", "substitute", "later_promise"]
    text: str
    details: dict[str, Any]


class ScoredLineOut(BaseModel):
    line_no: int
    line_id: int | None = None
    sku: str
    quantity: int
    unit_price: str
    state: str
    location_id: str | None
    carrier_id: str | None
    promised_ship_date: date | None
    promised_delivery_date: date | None
    expected_ready_on: date | None
    parent_line_no: int | None
    price_approval_pending: bool
    late_risk: LateRiskOut | None
    margin: MarginOut | None
    actions: list[ActionOut]


class OrderRiskOut(BaseModel):
    p_any_line_late: float | None = Field(
        description="1 - the product of the lines' on-time probabilities."
    )
    expected_late_lines: float | None
    predicted_otif: float | None = Field(description="Mean of (1 - P(late)) over the lines.")
    order_value: str
    credit_hold: bool


class ScoredOrderOut(BaseModel):
    customer_id: str
    scored_at: datetime
    models: dict[str, str] = Field(
        description="Model name -> the version that scored, or fallback."
    )
    order: OrderRiskOut
    lines: list[ScoredLineOut]


class CapturedOrderOut(ScoredOrderOut):
    order_id: int
    replayed: bool = Field(description="True when this answers a retry of an earlier request.")
    exception_ids: list[int]
    approval_ids: list[int]


class OrderLineOut(BaseModel):
    line_id: int
    line_no: int
    sku: str
    quantity: int
    state: str
    location_id: str | None
    unit_price: str
    first_promised_ship_date: date | None
    first_promised_delivery_date: date | None
    promised_ship_date: date | None
    promised_delivery_date: date | None
    parent_line_id: int | None


class OrderOut(BaseModel):
    order_id: int
    customer_id: str
    channel: str
    ship_to_region: str
    entered_at: datetime
    requested_date: date | None
    external_ref: str | None
    lines: list[OrderLineOut]


class ExceptionOut(BaseModel):
    id: int
    type: str
    severity: str
    owner_role: str
    status: str
    opened_at: datetime
    sla_due_at: datetime
    age_hours: float
    priority: float
    order_id: int | None
    line_id: int | None
    customer_id: str | None
    sku: str | None
    location_id: str | None
    margin_at_risk: str | None
    score: float | None
    reasons: list[str]
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class ExceptionsOut(BaseModel):
    data: list[ExceptionOut]
    count: int


Resolution = Literal[
    "expedited",
    "re_sourced",
    "customer_accepted_new_date",
    "split_shipment",
    "substituted",
    "price_corrected",
    "approved",
    "false_alarm",
    "other",
]
"""What was done about an exception; ``false_alarm`` is what alert precision counts against."""


class ResolutionIn(_In):
    resolution: Resolution = Field(
        description="What was done, so retraining can measure alert precision."
    )
    note: Note | None = None


class ShipmentEventIn(_In):
    event_type: Literal["packed", "shipped", "delivered", "eta_updated"]
    occurred_at: datetime = Field(description="When it happened, with its time zone.")
    details: dict[str, str | int | float | bool | None] | None = Field(
        default=None,
        description="eta_updated needs {'eta': 'YYYY-MM-DD'}; delivered may carry "
        "{'freight_cost': '123.40'}.",
    )


class ShipmentEventOut(BaseModel):
    shipment_id: int
    event_id: int
    event_type: str
    status: str
    exception_ids: list[int]
    replayed: bool
