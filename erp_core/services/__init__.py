"""The service layer: one function per business act, each inside one unit of work.

Every function takes a ``UnitOfWork``, the acting ``Actor``, plain values and the current time
(``now``, timezone-aware: the simulator and tests run the calendar), and returns plain values or
raises a ``DomainError``.
"""
