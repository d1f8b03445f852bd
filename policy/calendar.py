"""Calendar arithmetic the regulation's deadlines rely on.

"6 months after the leave date" (Đ5.3.b) and "monthly" (Đ13.3) are calendar
months: 31 January + 1 month is the last day of February, never 3 March.
Working days (Đ8.1.c, Đ8.2.c) skip weekends and the policy's holidays but
count the make-up Saturdays the government announces around Tết.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

D = TypeVar("D", date, datetime)


def add_months(when: D, months: int) -> D:
    """Move `when` by whole calendar months, clamping to the month's last day."""
    if months == 0:
        return when
    index = when.year * 12 + (when.month - 1) + months
    year, month0 = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month0 + 1)[1])
    return when.replace(year=year, month=month0 + 1, day=day)


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar day of an aware instant in the policy's time zone."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every instant in the server is time-zone aware")
    return moment.astimezone(tz).date()


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def is_working_day(day: date, holidays: Iterable[date], working_saturdays: Iterable[date]) -> bool:
    """Mon–Fri unless a holiday; a listed make-up Saturday also counts."""
    if day in set(working_saturdays):
        return True
    if day.weekday() >= 5:
        return False
    return day not in set(holidays)


def working_days_between(
    first: date, last: date, holidays: Iterable[date], working_saturdays: Iterable[date]
) -> int:
    """Working days strictly between `first` and `last` (both excluded)."""
    hol = set(holidays)
    sat = set(working_saturdays)
    count = 0
    day = first + timedelta(days=1)
    while day < last:
        if is_working_day(day, hol, sat):
            count += 1
        day += timedelta(days=1)
    return count


def utc_now() -> datetime:
    """The server's clock. Commands accept `--now` to replace it (simulated time)."""
    return datetime.now(UTC)
