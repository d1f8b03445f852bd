"""Đ6.2.a: a mailbox with no sending or receiving for 6 months, without a reason given, is suspended.

The clock starts at the latest of the activities the policy counts
(`inactivity.activities`: sending, receiving mail from others — system
notices never count —, logging in), the account's creation, and its last
password change (an operator restoring a suspended mailbox resets the
password, Đ6.3.b; a user changing it has signed in). An operator-recorded
reason (`account exempt ADDRESS --until D --reason ...`) keeps the mailbox
from suspension up to D; afterwards the rule applies again. The mailbox
postmaster@ delivers to (the operators', Đ5.2) is never suspended by the
job: the system's notices go there, and they do not count as receiving.

Before the suspension, at each lead time of `inactivity.warnings`, the
user and the unit mailbox are warned, so the unit can give the reason the
article asks for. The suspension is a fact recorded with its reason and
audited (actor system:jobs, rule Đ6.2.a); a suspended mailbox still
receives (Đ6.1). Accounts with a leave date follow Đ5.3.b instead.
"""

from __future__ import annotations

from datetime import datetime

from mailserver.jobs.base import SYSTEM, Action, Done, JobBase
from mailserver.notices import day_en, day_vi, duration_vi
from policy.deadlines import due_warning, exempt_on, inactivity_deadline, last_activity
from policy.lockstate import LockState
from storage.records import Account, ts


class InactivityJob(JobBase):
    name = "inactivity"
    rule = "Đ6.2.a"

    def since(self, acc: Account) -> datetime:
        return last_activity(
            created_at=acc.created_at, restarted_at=acc.password_changed_at,
            activity={"send": acc.last_send_at, "receive": acc.last_receive_at, "login": acc.last_login_at},
            rules=self.app.policy.inactivity,
        )

    async def plan(self, now: datetime) -> list[Action]:
        rules = self.app.policy.inactivity
        today = self.today(now)
        operators = await self.directory.postmaster_target()
        actions: list[Action] = []
        for acc in await self.directory.list_accounts():
            state = self.directory.access(acc, now).state
            if state not in (LockState.active, LockState.send_locked) or acc.retired_on is not None:
                continue
            if operators is not None and acc.id == operators.id:
                continue  # postmaster@ delivers here: suspending it would hide every notice from the operators
            if exempt_on(acc.exempt_until, today):
                continue
            last = self.since(acc)
            deadline = inactivity_deadline(last, rules)
            if now >= deadline:
                actions.append(self.action(
                    f"suspend:{acc.id}:{ts(last)}", acc.address,
                    f"suspend {acc.address}: no activity since {last.astimezone(self.app.policy.tz):%Y-%m-%d}",
                    lambda acc=acc, last=last: self._suspend(acc, last)))
                continue
            warning = due_warning(deadline, now, rules.warnings)
            if warning is not None:
                actions.append(self.action(
                    f"warning:{acc.id}:{ts(last)}:{warning}", acc.address,
                    f"warn {acc.address}: suspended on {deadline.astimezone(self.app.policy.tz):%Y-%m-%d} "
                    f"unless used ({warning} before)",
                    lambda acc=acc, last=last, deadline=deadline: self._warn(acc, last, deadline)))
        return actions

    async def _values(self, acc: Account, last: datetime) -> dict[str, str]:
        period = self.app.policy.inactivity.suspend_after
        local = last.astimezone(self.app.policy.tz).date()
        return {"unit_name": await self.unit_name(acc) or acc.display_name, "last_activity": day_vi(local),
                "last_activity_en": day_en(local), "period": duration_vi(period), "period_en": str(period)}

    async def _warn(self, acc: Account, last: datetime, deadline: datetime) -> Done:
        day = deadline.astimezone(self.app.policy.tz).date()
        values = await self._values(acc, last)
        values.update(suspend_on=day_vi(day), suspend_on_en=day_en(day))
        return await self.notify("inactivity-warning.txt", acc, values, "notice.inactivity-warning",
                                 {"last_activity": last, "suspend_on": day})

    async def _suspend(self, acc: Account, last: datetime) -> Done:
        period = self.app.policy.inactivity.suspend_after
        reason = (f"không phát sinh giao dịch gửi, nhận trong {duration_vi(period)} (Điều 6.2.a) / "
                  f"no sending, receiving or login for {period} (Article 6.2.a)")
        await self.directory.suspend(acc.address, reason, actor=SYSTEM, rule=self.rule)
        return await self.notify("inactivity-suspended.txt", acc, await self._values(acc, last),
                                 "notice.inactivity-suspended", {"last_activity": last})
