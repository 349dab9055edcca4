"""Typed domain errors a user can cause, each naming the field and the offending value.

The web layer maps each class to one HTTP status in one table; the CLI maps them to exit code 2.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can cause; carries the field and value at fault."""

    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "value": None if self.value is None else str(self.value),
        }


class NotFound(DomainError):
    """A referenced record (SKU, customer, location, order, ...) does not exist."""

    code = "not_found"

    def __init__(self, entity: str, field: str, value: Any) -> None:
        super().__init__(f"unknown {entity}: {field}={value!r}", field=field, value=value)
        self.entity = entity


class InvalidValue(DomainError):
    """A value that does not parse or breaks a rule on its own (quantity <= 0, bad date)."""

    code = "invalid_value"

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(f"invalid {field}={value!r}: {reason}", field=field, value=value)
        self.reason = reason


class IllegalTransition(DomainError):
    """A state change the transition table does not allow."""

    code = "illegal_transition"

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(
            f"{entity} cannot go from {current!r} to {target!r}", field="state", value=target
        )
        self.entity = entity
        self.current = current
        self.target = target


class PermissionDenied(DomainError):
    """The actor's role is not allowed to perform the act by the governance policy."""

    code = "permission_denied"

    def __init__(self, role: str, permission: str) -> None:
        super().__init__(
            f"role {role!r} may not {permission.replace('_', ' ')}", field="role", value=role
        )
        self.role = role
        self.permission = permission


class Conflict(DomainError):
    """The request contradicts the current state (idempotency key reused for another payload,
    not enough free stock for a transfer, a pending approval blocking a pick, ...)."""

    code = "conflict"


class PolicyError(DomainError):
    """The governance policy file is malformed."""

    code = "policy_error"
