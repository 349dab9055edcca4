"""The API's routes, one module per resource; each only maps HTTP to a service and back."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**31 - 1
"""Ids are the database's integers: PostgreSQL's ``integer`` ends here, and an id past it could
not name a row anyway (it would be a 500 from the driver, not a 404)."""

EntityId = Annotated[int, Path(ge=1, le=MAX_ID, description="A row id.")]
