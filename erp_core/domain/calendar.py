"""Business-day arithmetic: weekends and listed holidays are not working days."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(frozen=True)
class BusinessCalendar:
    """Monday to Friday, minus the holidays listed in the governance policy."""

    holidays: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def with_holidays(cls, holidays: Iterable[date]) -> BusinessCalendar:
        return cls(frozenset(holidays))

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def next_business_day_on_or_after(self, day: date) -> date:
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def add_business_days(self, day: date, days: int) -> date:
        """The business day ``days`` working days after ``day`` (``day`` itself counts as 0)."""
        if days < 0:
            raise ValueError(f"days={days}: must be >= 0")
        current = self.next_business_day_on_or_after(day)
        for _ in range(days):
            current = self.next_business_day_on_or_after(current + timedelta(days=1))
        return current

    def business_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when end is before start."""
        if end < start:
            return -self.business_days_between(end, start)
        return sum(
            1
            for offset in range(1, (end - start).days + 1)
            if self.is_business_day(start + timedelta(days=offset))
        )
