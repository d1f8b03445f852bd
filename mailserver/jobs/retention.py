"""Retention, once a day: Đ8.2.b folders (Trash, Junk, ...), Đ7.2 log files, and the records that
keep their own retention (audit log, job ledger, daily counters).

* Đ8.2.b "tạo lập chế độ xóa bỏ, lưu trữ": messages that have been in Trash
  or Junk (the policy's names, and any folder a client marked \\Trash or
  \\Junk) longer than `folder_retention.trash/junk`, and in the folders of
  `folder_retention.folders`, are expunged. Age counts from when a message
  entered the folder (the store's "saved before"), never from its date.
* Đ7.2: mail log (`mail-YYYY-MM-DD.jsonl`) and server log
  (`server-YYYY-MM-DD.log`) files whose whole day is older than
  `logs.mail_log_retention` / `logs.system_log_retention` are deleted. A mail
  log is deleted only once its day has been counted (counters job), so the
  reports never lose a day to the purge.
* The audit log keeps `logs.audit_retention` (longer, default 5 years); the
  job ledger follows it; the daily counters keep `logs.counter_retention`.

Every deletion is audited with its article.
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from pathlib import Path

from mailserver.jobs.base import Action, Done, JobBase
from policy.deadlines import expired_days, expunge_before, retention_cutoff
from policy.lockstate import LockState
from policy.units import CalendarDuration
from storage.counters import MAIL_LOG_EXT, MAIL_LOG_PREFIX, CounterStore, daily_files
from storage.errors import FolderNotFound
from storage.records import Account

SERVER_LOG = ("server", "log")


class FolderRetentionJob(JobBase):
    name = "folder-retention"
    rule = "Đ8.2.b"
    daily = True

    def _rules(self, folders: list[tuple[str, str | None]]) -> list[tuple[str, CalendarDuration]]:
        """(folder, keep) for this mailbox's folders (name, special use)."""
        r = self.app.policy.folder_retention
        names = self.app.policy.folders
        out: dict[str, CalendarDuration] = {}
        for name, use in folders:
            if r.trash is not None and (name == names.trash or use == "\\Trash"):
                out[name] = r.trash
            elif r.junk is not None and (name == names.junk or use == "\\Junk"):
                out[name] = r.junk
            elif name in r.folders:
                out[name] = r.folders[name]
        return sorted(out.items())

    async def plan(self, now: datetime) -> list[Action]:
        today = self.today(now)
        actions: list[Action] = []
        for acc in await self.directory.list_accounts():
            if self.directory.access(acc, now).state == LockState.revoked or not self.app.store.has_mailbox(acc):
                continue
            session = await self.app.store.session(acc)
            folders = [(f.name, f.special_use) for f in await session.list_folders() if f.selectable]
            for folder, keep in self._rules(folders):
                before = expunge_before(now, keep)
                try:
                    count, _ = await self.app.store.saved_before(acc, folder, before)
                except FolderNotFound:
                    continue
                if count:
                    actions.append(self.action(
                        f"{today}:{acc.id}:{folder}", acc.address,
                        f"expunge {count} messages in {folder} of {acc.address} older than {keep}",
                        lambda acc=acc, folder=folder, before=before, keep=keep: self._expunge(acc, folder, before,
                                                                                             keep)))
        return actions

    async def _expunge(self, acc: Account, folder: str, before: datetime, keep: CalendarDuration) -> Done:
        count, size = await self.app.store.expunge_saved_before(acc, folder, before)
        return await self.recorded("mailbox.expunge", acc.address,
                                   {"folder": folder, "messages": count, "bytes": size, "older_than": str(keep)})


class LogRetentionJob(JobBase):
    name = "log-retention"
    rule = "Đ7.2"
    daily = True

    async def plan(self, now: datetime) -> list[Action]:
        today = self.today(now)
        logs = self.app.policy.logs
        folder = self.app.settings.paths.log_dir
        mail = daily_files(folder, MAIL_LOG_PREFIX, MAIL_LOG_EXT)
        server = daily_files(folder, *SERVER_LOG)
        counted = await self.ledger.done_keys(f"counters:mail-log:{d}" for d in mail)
        doomed = [mail[d] for d in expired_days(mail, today, logs.mail_log_retention)
                  if f"counters:mail-log:{d}" in counted]
        doomed += [server[d] for d in expired_days(server, today, logs.system_log_retention)]
        if not doomed:
            return []
        cut_mail = retention_cutoff(today, logs.mail_log_retention)
        cut_server = retention_cutoff(today, logs.system_log_retention)
        return [self.action(f"{today}", str(folder),
                            f"delete {len(doomed)} log files (mail logs before {cut_mail}, server logs before "
                            f"{cut_server})", lambda: self._delete(doomed, cut_mail, cut_server))]

    async def _delete(self, paths: list[Path], cut_mail: date, cut_server: date) -> Done:
        removed = []
        for path in sorted(paths):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
        return await self.recorded("logs.purge", str(self.app.settings.paths.log_dir),
                                   {"removed": removed, "mail_logs_before": cut_mail, "server_logs_before": cut_server})


class RecordsRetentionJob(JobBase):
    name = "records-retention"
    rule = "Đ7.2"
    daily = True

    async def plan(self, now: datetime) -> list[Action]:
        today = self.today(now)
        return [self.action(f"{today}", None, "apply the retention of the audit log, job ledger and counters",
                            lambda: self._prune(now, today))]

    async def _prune(self, now: datetime, today: date) -> Done:
        logs = self.app.policy.logs
        audit_before = expunge_before(now, logs.audit_retention)
        counters_before = retention_cutoff(today, logs.counter_retention)
        detail = {
            "audit_rows": await self.directory.prune_audit(audit_before),
            "ledger_rows": await self.ledger.prune(audit_before),
            "counter_rows": await CounterStore(self.directory.db).prune(counters_before),
            "audit_before": audit_before, "counters_before": counters_before,
        }
        if any(detail[k] for k in ("audit_rows", "ledger_rows", "counter_rows")):
            return await self.recorded("records.purge", None, detail)
        return Done(detail)
