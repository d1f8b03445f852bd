"""Đ5.3.b: retirement, leave or transfer — sending locks, reminders, revocation with an archive.

The lock and the revocation themselves take effect at the instant they are
due without any job (policy.lockstate computes them at every check); this
job performs what the regulation and the users need around them:

* on the day sending locks: a notice to the person, copied to the unit
  mailbox, with the revocation date (staff: the leave date; leaders: one
  month later);
* `retirement.revoke_warnings` before the revocation: a reminder to save
  the mail worth keeping;
* on the revocation day: `revoked_at` is recorded (as that day, even when
  the job runs later, so the address-reuse period counts from it), the
  mailbox is archived (storage.archive: a verified tar.gz with a manifest)
  and only then removed, and the unit mailbox is told.

A mailbox an operator revoked by hand (`account revoke`) is archived by
the same action.
"""

from __future__ import annotations

from datetime import date, datetime

from mailserver.jobs.base import SYSTEM, Action, Done, JobBase
from mailserver.notices import day_en, day_vi, days_en
from policy.calendar import local_date, start_of_day
from policy.deadlines import days_left, due_warning
from policy.lockstate import Access, LockState
from policy.units import format_size
from storage.archive import archive_name
from storage.archives import ArchiveEntry, ArchiveRecords
from storage.records import Account


class RetirementJob(JobBase):
    name = "retirement"
    rule = "Đ5.3.b"

    @property
    def archives(self) -> ArchiveRecords:
        return ArchiveRecords(self.directory, self.app.clock)

    async def plan(self, now: datetime) -> list[Action]:
        today = self.today(now)
        actions: list[Action] = []
        for acc in await self.directory.list_accounts():
            access = self.directory.access(acc, now)
            if access.state == LockState.revoked:
                if await self._needs_revocation(acc):
                    actions.append(self._revoke(acc, access, today))
                continue
            if not acc.is_person or acc.retired_on is None:
                continue
            lock_on, revoke_on = access.send_locked_on, access.revoke_on
            assert lock_on is not None and revoke_on is not None
            warning = due_warning(revoke_on, today, self.app.policy.retirement.revoke_warnings)
            warning_key = f"revoke-warning:{acc.id}:{revoke_on}:{warning}"
            if today >= lock_on:
                actions.append(self._lock_notice(acc, lock_on, revoke_on, (warning_key,) if warning else ()))
            if warning is not None:
                actions.append(self.action(
                    warning_key, acc.address, f"remind {acc.address}: revoked on {revoke_on} ({warning} before)",
                    lambda acc=acc, revoke_on=revoke_on: self._send_warning(acc, revoke_on)))
        return actions

    async def _needs_revocation(self, acc: Account) -> bool:
        if acc.revoked_at is None:
            return True
        return self.app.store.has_mailbox(acc) or self.app.store.archive_pending(acc)

    # ------------------------------------------------------------------ notices

    async def _values(self, acc: Account, revoke_on: date) -> dict[str, str]:
        assert acc.retired_on is not None
        return {"unit_name": await self.unit_name(acc), "leave_date": day_vi(acc.retired_on),
                "leave_date_en": day_en(acc.retired_on), "revoke_date": day_vi(revoke_on),
                "revoke_date_en": day_en(revoke_on)}

    def _lock_notice(self, acc: Account, lock_on: date, revoke_on: date, supersedes: tuple[str, ...]) -> Action:
        async def run() -> Done:
            values = await self._values(acc, revoke_on)
            values.update(lock_date=day_vi(lock_on), lock_date_en=day_en(lock_on))
            return await self.notify("retirement-locked.txt", acc, values, "notice.retirement-locked",
                                     {"lock_on": lock_on, "revoke_on": revoke_on})

        return self.action(f"locked:{acc.id}:{acc.retired_on}", acc.address,
                           f"tell {acc.address}: sending locked since {lock_on}, revoked on {revoke_on}", run,
                           supersedes=supersedes)

    async def _send_warning(self, acc: Account, revoke_on: date) -> Done:
        left = days_left(revoke_on, self.today(self.app.clock()))
        values = await self._values(acc, revoke_on)
        values.update(days=str(left), days_en=days_en(left))
        return await self.notify("revocation-warning.txt", acc, values, "notice.revocation-warning",
                                 {"revoke_on": revoke_on, "days_left": left})

    # ------------------------------------------------------------------ revocation and archive

    def _revoke(self, acc: Account, access: Access, today: date) -> Action:
        revoked_on = access.revoke_on if acc.revoked_at is None else local_date(acc.revoked_at, self.app.policy.tz)
        assert revoked_on is not None

        async def run() -> Done:
            tz = self.app.policy.tz
            fresh = acc
            if acc.revoked_at is None:
                fresh = await self.directory.revoke(acc.address, actor=SYSTEM, rule=self.rule,
                                                    at=start_of_day(revoked_on, tz))
            detail: dict[str, object] = {"revoked_on": revoked_on}
            entry = None
            if self.app.store.has_mailbox(fresh) or self.app.store.archive_pending(fresh):
                entry = await self._archive(fresh, revoked_on)
                detail.update(archive=str(entry.path), messages=entry.messages, bytes=entry.bytes)
            await self._tell_unit(fresh, revoked_on, entry.messages if entry else 0, entry.bytes if entry else 0)
            return Done(detail)

        what = "archive the mailbox of" if acc.revoked_at else "revoke and archive"
        return self.action(f"revoke:{acc.id}", acc.address, f"{what} {acc.address} (revoked on {revoked_on})", run)

    async def _archive(self, acc: Account, revoked_on: date) -> ArchiveEntry:
        rules = self.app.policy.retirement
        purge_after = rules.archive_keep.after(revoked_on)
        assert isinstance(purge_after, date)
        access = self.directory.access(acc)
        dest = self.app.settings.paths.archive_dir / acc.domain / archive_name(acc.local_part, acc.id, revoked_on)
        unit = await self.directory.unit_by_id(acc.unit_id)
        info = {"id": acc.id, "address": acc.address, "name": acc.display_name, "kind": acc.kind,
                "role": acc.role.value, "unit": unit.address if unit else None}
        dates = {"created": acc.created_at.isoformat(), "leave_date": _iso(acc.retired_on),
                 "send_locked_on": _iso(access.send_locked_on), "revoked_on": revoked_on.isoformat(),
                 "archived_at": self.app.clock().isoformat(), "purge_after": purge_after.isoformat()}
        result = await self.app.store.archive_mailbox(acc, dest, info, dates)
        return await self.archives.add(acc, result, revoked_on, purge_after, actor=SYSTEM)

    async def _tell_unit(self, acc: Account, revoked_on: date, messages: int, size: int) -> None:
        unit_box = await self.unit_mailbox(acc)
        if unit_box is None:
            return
        rules = self.app.policy.retirement
        purge = rules.archive_keep.after(revoked_on)
        reuse = rules.address_reuse_after.after(revoked_on)
        assert isinstance(purge, date) and isinstance(reuse, date)
        values = {"person": acc.display_name, "person_address": acc.address, "revoke_date": day_vi(revoked_on),
                  "revoke_date_en": day_en(revoked_on), "messages": str(messages), "size": format_size(size),
                  "purge_date": day_vi(purge), "purge_date_en": day_en(purge), "reuse_date": day_vi(reuse),
                  "reuse_date_en": day_en(reuse)}
        await self.notices.send("revoked.txt", unit_box, values)


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None
