"""Đ8.1.c: planned downtime is announced to every mailbox, with a reminder and, if need be, a cancellation.

`mailserver notice maintenance` checks the lead time (policy/deadlines.py)
and records the window; the announcement, the reminder the day before
(`maintenance.reminder_days_before`) and the cancellation notice are
actions of this job, so whichever process runs first delivers each exactly
once, and a CLI that died half-way is completed by the scheduler. Notices
go to every mailbox that can sign in (active and send-locked); suspended
ones cannot read them.
"""

from __future__ import annotations

from datetime import datetime

from mailserver.jobs.base import Action, Done, JobBase
from mailserver.notices import day_en, day_vi, duration_vi, moment_en, moment_vi
from policy.deadlines import reminder_day
from policy.units import CalendarDuration
from storage.maintenance import MaintenanceWindows, Window
from storage.records import Account


class MaintenanceJob(JobBase):
    name = "maintenance"
    rule = "Đ8.1.c"

    @property
    def windows(self) -> MaintenanceWindows:
        return MaintenanceWindows(self.directory, self.app.clock)

    async def plan(self, now: datetime) -> list[Action]:
        tz = self.app.policy.tz
        today = self.today(now)
        actions: list[Action] = []
        for w in await self.windows.all():
            announced = self.key(f"{w.id}:announce")
            if w.cancelled:
                if now < w.end_at and await self.ledger.is_done(announced):
                    actions.append(self._broadcast(w, "cancelled", "maintenance-cancelled.txt",
                                                   f"tell every mailbox: maintenance {w.id} cancelled"))
                continue
            if now >= w.start_at:
                continue
            start = w.start_at.astimezone(tz)
            actions.append(self._broadcast(w, "announce", "maintenance.txt",
                                           f"announce maintenance {w.id} from {start:%Y-%m-%d %H:%M}"))
            day = reminder_day(start.date(), self.app.policy.maintenance.reminder_days_before)
            if day is not None and today >= day and w.created_at.astimezone(tz).date() < day:
                actions.append(self._broadcast(w, "reminder", "maintenance-reminder.txt",
                                               f"remind every mailbox of maintenance {w.id}"))
        return actions

    async def recipients(self) -> list[Account]:
        """Every mailbox that can sign in to read a notice."""
        return [a for a in await self.directory.list_accounts() if self.directory.access(a).may_web_login]

    def values(self, w: Window) -> dict[str, str]:
        tz = self.app.policy.tz
        start, end = w.start_at.astimezone(tz), w.end_at.astimezone(tz)
        length = CalendarDuration(seconds=int((w.end_at - w.start_at).total_seconds()))
        made = w.created_at.astimezone(tz).date()
        return {"start": moment_vi(start), "start_en": moment_en(start), "end": moment_vi(end),
                "end_en": moment_en(end), "duration": duration_vi(length), "duration_en": str(length),
                "reason": w.reason, "cancel_reason": w.cancel_reason or "", "announced": day_vi(made),
                "announced_en": day_en(made)}

    def _broadcast(self, w: Window, what: str, template: str, summary: str) -> Action:
        async def run() -> Done:
            accounts = await self.recipients()
            delivered = await self.notices.broadcast(template, accounts, self.values(w))
            return await self.recorded(f"notice.maintenance-{what}", f"maintenance:{w.id}",
                                       {"recipients": len(accounts), "delivered": delivered,
                                        "start": w.start_at, "end": w.end_at})

        return self.action(f"{w.id}:{what}", f"maintenance:{w.id}", summary, run)
