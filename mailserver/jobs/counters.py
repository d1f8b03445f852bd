"""Đ7.2 → Đ12.9, Đ14: each ended day's mail log becomes daily counters per account and unit.

Every mail log file of a day before today that has not been counted is
reduced (storage/counters.py) and written to `daily_counters` in the same
transaction that marks the day counted, so a day is never counted twice,
even by two processes. Addresses are attributed to the account holding them
and to that account's unit as it is today (the day after the traffic).
Once a day each mailbox's size is recorded too (`storage_bytes`,
`storage_messages`), so reports for past periods know the storage used then.
"""

from __future__ import annotations

from datetime import date, datetime

from mailserver.jobs.base import SYSTEM, Action, Done, JobBase
from policy.lockstate import LockState
from storage.counters import MAIL_LOG_EXT, MAIL_LOG_PREFIX, NOBODY, CounterRow, CounterStore, count_file, daily_files
from storage.db import Database
from storage.records import Account


class CountersJob(JobBase):
    name = "counters"
    rule = "Đ7.2, Đ12.9, Đ14.3.đ"
    daily = True

    async def plan(self, now: datetime) -> list[Action]:
        today = self.today(now)
        files = daily_files(self.app.settings.paths.log_dir, MAIL_LOG_PREFIX, MAIL_LOG_EXT)
        actions = [
            self.action(f"mail-log:{day}", path.name, f"count {path.name}",
                        lambda day=day, path=path: self._count(day, path))
            for day, path in sorted(files.items()) if day < today
        ]
        actions.append(self.action(f"storage:{today}", None, f"record the size of every mailbox on {today}",
                                   lambda: self._storage(today)))
        return actions

    async def _owners(self, addresses: set[str]) -> dict[str, Account]:
        out = {}
        for address in addresses:
            if address == NOBODY:
                continue
            acc = await self.directory.get_account(address)
            if acc is not None:
                out[address] = acc
        return out

    async def _count(self, day: date, path) -> Done:  # type: ignore[no-untyped-def]
        counts = count_file(path, self.app.settings.domains)
        owners = await self._owners({a for a, _, _ in counts.counts})
        merged: dict[tuple[int, str, str], CounterRow] = {}
        for (address, metric, reason), n in counts.counts.items():
            acc = owners.get(address)
            account_id, unit_id = (acc.id, acc.unit_id or 0) if acc else (0, 0)
            key = (account_id, metric, reason)
            old = merged.get(key)
            merged[key] = CounterRow(day, account_id, unit_id, metric, reason, n + (old.value if old else 0))
        rows = list(merged.values())
        detail = {"lines": counts.lines, "skipped": counts.skipped, "rows": len(rows)}

        async def commit(db: Database) -> None:
            await CounterStore.put(db, rows)
            await self.directory.audit_within(SYSTEM, "counters.day", path.name, after=detail, rule=self.rule)

        return Done(detail, commit)

    async def _storage(self, today: date) -> Done:
        rows = []
        for acc in await self.directory.list_accounts():
            if self.directory.access(acc).state == LockState.revoked or not self.app.store.has_mailbox(acc):
                continue
            usage = await self.app.store.usage(acc)
            rows += [CounterRow(today, acc.id, acc.unit_id or 0, "storage_bytes", "", usage.bytes),
                     CounterRow(today, acc.id, acc.unit_id or 0, "storage_messages", "", usage.messages)]

        async def commit(db: Database) -> None:
            await CounterStore.put(db, rows)

        return Done({"mailboxes": len(rows) // 2}, commit)
