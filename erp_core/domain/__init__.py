"""Pure business rules on plain values: no SQLAlchemy, no I/O, testable in milliseconds."""
