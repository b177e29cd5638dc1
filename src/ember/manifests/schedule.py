"""Schedule expressions: ``rate(5 minutes)`` and five-field cron (``*/5 * * * *``).

A schedule is a pure function from an instant to the next firing time, so
firings are deterministic: a rate fires at whole multiples of its period
since the Unix epoch (``rate(5 minutes)`` at :00, :05, ...), a cron
expression at the instants croniter computes in UTC. ``minute_seconds``
shrinks the length of a minute for rate schedules only; it exists for
tests (``ember serve --schedule-minute-seconds``) and is 60 otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


class ScheduleError(ValueError):
    """The expression is not a schedule; the message says what is accepted."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    period_minutes: int | None  # rate(...) schedules; None for cron
    cron: str | None

    def next_after(self, moment: datetime, minute_seconds: float = 60.0) -> datetime:
        """The first firing strictly after ``moment`` (an aware datetime)."""
        if self.period_minutes is not None:
            period = self.period_minutes * minute_seconds
            index = math.floor(moment.timestamp() / period) + 1
            tick = datetime.fromtimestamp(index * period, UTC)
            # A period that is no binary fraction (0.1 s) can round back onto ``moment``.
            return tick if tick > moment else datetime.fromtimestamp((index + 1) * period, UTC)
        found: datetime = croniter(self.cron, moment.astimezone(UTC)).get_next(datetime)
        if found <= moment:  # croniter works in whole seconds
            found = croniter(self.cron, moment + timedelta(seconds=1)).get_next(datetime)
        return found


def parse(expression: str) -> Schedule:
    """Parse ``expression``; ScheduleError names what is accepted when it is not one."""
    text = expression.strip()
    match = _RATE.match(text)
    if match:
        count, unit = int(match.group(1)), match.group(2).rstrip("s")
        if count < 1:
            raise ScheduleError(f"{expression!r}: a rate must be at least 1 {unit}")
        if (count == 1) != (match.group(2) == unit):
            plural = "" if count == 1 else "s"
            raise ScheduleError(f"{expression!r}: write rate({count} {unit}{plural})")
        return Schedule(text, count * _UNIT_MINUTES[unit], None)
    cron = text[5:-1].strip() if text.startswith("cron(") and text.endswith(")") else text
    if len(cron.split()) == 5 and croniter.is_valid(cron):
        return Schedule(text, None, cron)
    raise ScheduleError(
        f"{expression!r} is not a schedule: use rate(N minutes|hours|days) or a five-field "
        "cron expression such as '*/5 * * * *' (UTC)"
    )
