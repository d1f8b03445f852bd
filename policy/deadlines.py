"""When the regulation's calendar falls due: pure functions the scheduled jobs call.

The jobs (mailserver/jobs/) only perform side effects: notices, archives,
purges, suspensions. *When* each is due is decided here, from dates and the
policy, so every deadline can be tested with plain values:

* lead-time warnings (Đ13.3 password age, Đ5.3.b revocation, Đ6.2.a
  inactivity): after downtime the scheduler catches up with the one most
  urgent warning, never a stale "7 days left" when 2 remain;
* Đ6.2.a: the moment an inactive mailbox is suspended;
* Đ8.1.c: working days strictly between the notice day and the start day;
* Đ7.2 and Đ8.2.b: which days' files and which messages are past retention;
* Đ12.9, Đ14.1.c, Đ14.3.đ: the report periods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from policy.calendar import is_working_day, working_days_between
from policy.model import CalendarPolicy, InactivityPolicy
from policy.units import CalendarDuration

D = TypeVar("D", date, datetime)


def due_warning(deadline: D, now: D, leads: Sequence[CalendarDuration]) -> CalendarDuration | None:
    """The warning to give at `now` for `deadline`: the shortest lead time already reached.

    None before the first warning is due and from the deadline on (after it a warning is pointless:
    the thing has happened). With leads [7 days, 3 days, 1 day] and 2 days left this is "3 days",
    whether or not the 7-day warning was given: a job that was down for a week gives one warning,
    the right one. Callers record which (deadline, lead) pairs they delivered.
    """
    if now >= deadline:
        return None
    reached = [lead for lead in leads if now >= lead.before(deadline)]
    return min(reached) if reached else None


def time_left(deadline: datetime, now: datetime) -> timedelta:
    return max(timedelta(0), deadline - now)


def days_left(deadline: date, today: date) -> int:
    return max(0, (deadline - today).days)


# ---------------------------------------------------------------- Đ6.2.a inactivity


def last_activity(
    *,
    created_at: datetime,
    restarted_at: datetime | None,
    activity: dict[str, datetime | None],
    rules: InactivityPolicy,
) -> datetime:
    """The moment the Đ6.2.a clock starts from.

    The activities the policy counts (send, receive from others, login), or the account's creation,
    or `restarted_at` (the last password change: an operator restoring a suspended mailbox resets the
    password, Đ6.3.b, and a user changing it has signed in), whichever is latest. Without the last
    two a mailbox restored today would be suspended again by the next run.
    """
    moments = [created_at]
    if restarted_at is not None:
        moments.append(restarted_at)
    moments += [when for kind, when in activity.items() if kind in rules.activities and when is not None]
    return max(moments)


def inactivity_deadline(last: datetime, rules: InactivityPolicy) -> datetime:
    """When a mailbox idle since `last` is suspended (Đ6.2.a: 6 calendar months by default)."""
    moved = rules.suspend_after.after(last)
    assert isinstance(moved, datetime)
    return moved


def exempt_on(exempt_until: date | None, today: date) -> bool:
    """An operator-recorded reason (`account exempt --until D`) covers every day up to D inclusive."""
    return exempt_until is not None and today <= exempt_until


# ---------------------------------------------------------------- Đ8.1.c maintenance lead time


@dataclass(frozen=True)
class LeadTime:
    notice_day: date
    start_day: date
    working_days: int  # strictly between the two days
    required: int
    earliest_start_day: date  # the first start day that would satisfy `required`

    @property
    def sufficient(self) -> bool:
        return self.working_days >= self.required


def _working(calendar: CalendarPolicy) -> tuple[set[date], set[date]]:
    return set(calendar.holidays), set(calendar.working_saturdays)


def earliest_start_day(notice_day: date, required: int, calendar: CalendarPolicy) -> date:
    """The first day with `required` full working days strictly between it and `notice_day`."""
    holidays, saturdays = _working(calendar)
    day, count = notice_day + timedelta(days=1), 0
    while count < required:
        if is_working_day(day, holidays, saturdays):
            count += 1
        day += timedelta(days=1)
    return day


def maintenance_lead(notice_day: date, start_day: date, required: int, calendar: CalendarPolicy) -> LeadTime:
    """Đ8.1.c "tối thiểu trước 03 ngày làm việc": count the full working days strictly between the
    day users are told and the day the service stops. Weekends and the policy's holidays (Tết) do not
    count; the make-up Saturdays the government announces do."""
    holidays, saturdays = _working(calendar)
    return LeadTime(
        notice_day=notice_day,
        start_day=start_day,
        working_days=working_days_between(notice_day, start_day, holidays, saturdays),
        required=required,
        earliest_start_day=earliest_start_day(notice_day, required, calendar),
    )


def reminder_day(start_day: date, days_before: int) -> date | None:
    """The day the reminder is delivered (None: no reminder)."""
    return None if days_before <= 0 else start_day - timedelta(days=days_before)


# ---------------------------------------------------------------- Đ7.2, Đ8.2.b retention


def retention_cutoff(today: date, keep: CalendarDuration) -> date:
    """Files of days before this are older than `keep` in their entirety and are removed.

    A daily file of day D holds events up to D 23:59:59; they are all older than `keep` exactly when
    D + keep <= today, i.e. D < today - keep. The file of the cutoff day itself is kept: its
    morning is past the limit, its evening not yet.
    """
    cut = keep.before(today)
    assert isinstance(cut, date)
    return cut


def expired_days(days: Iterable[date], today: date, keep: CalendarDuration) -> list[date]:
    cut = retention_cutoff(today, keep)
    return sorted(d for d in days if d < cut)


def expunge_before(now: datetime, keep: CalendarDuration) -> datetime:
    """Messages put into a folder before this have been there longer than `keep` (Đ8.2.b)."""
    moved = keep.before(now)
    assert isinstance(moved, datetime)
    return moved


# ---------------------------------------------------------------- Đ12.9, Đ14 report periods

PERIODS = {"3m": 3, "6m": 6, "12m": 12}


@dataclass(frozen=True)
class Period:
    """[first, end): whole local days, `end` excluded."""

    first: date
    end: date
    months: int

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)

    def __contains__(self, day: date) -> bool:
        return self.first <= day < self.end


def report_period(name: str, end: date) -> Period:
    """Đ14.3.đ "định kỳ 03 tháng, 06 tháng, năm": the N calendar months before `end` (excluded).

    `end` = 2027-07-01 with "6m" is the first half of 2027."""
    if name not in PERIODS:
        raise ValueError(f'"{name}" is not a report period (use {", ".join(PERIODS)})')
    months = PERIODS[name]
    first = CalendarDuration(months=months).before(end)
    assert isinstance(first, date)
    return Period(first, end, months)
