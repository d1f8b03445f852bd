"""Đ5.3.b: when a retiring or departing person's mailbox locks and is revoked.

"Lãnh đạo cấp phòng, ban trở xuống": sending is locked at once and the
mailbox is revoked 6 months after the official leave date. "Lãnh đạo cấp sở,
ban, ngành, UBND các huyện ... trở lên": sending is locked 1 month after and
the mailbox revoked 12 months after. Durations come from policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from policy.model import RetirementPolicy


class Role(StrEnum):
    staff = "staff"  # head of division (phòng, ban) and below
    leader = "leader"  # department, district level and above


@dataclass(frozen=True)
class RetirementSchedule:
    leave_date: date
    send_lock_on: date
    revoke_on: date


def retirement_schedule(role: Role, leave_date: date, rules: RetirementPolicy) -> RetirementSchedule:
    """The dates sending locks and the mailbox is revoked for a leave date (Đ5.3.b)."""
    sched = rules.leader if role == Role.leader else rules.staff
    lock = sched.send_lock_after.after(leave_date)
    revoke = sched.revoke_after.after(leave_date)
    assert isinstance(lock, date) and isinstance(revoke, date)
    return RetirementSchedule(leave_date=leave_date, send_lock_on=lock, revoke_on=revoke)
