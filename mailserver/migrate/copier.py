"""Copy one source mailbox into one account through the store's public API (Đ8.2.d, Đ10.2).

The copier never writes Maildir files itself: every message goes through
`MailStore.import_message`, the same durable path as delivery and APPEND,
so the index, the UIDs and the quota stay exact, and clients connected
meanwhile see the mail arrive.

Per account, in order:

1. log in to the source, list its folders, map them (`folders.py`), create
   the missing ones here and subscribe them (Thunderbird shows only
   subscribed folders, and users saw these on the old server);
2. settle what an interrupted run left `pending` (see `state.py`);
3. plan: per folder, the messages after the recorded last UID and those
   that failed last time; the total is checked against the quota plus the
   policy's migration allowance before anything is copied, so a mailbox
   that cannot fit stops with a report instead of half-copied;
4. copy in batches (`migration.batch_messages` / `batch_bytes`): the next
   batch is read from the source while the current one is stored; each
   batch is journalled as pending, appended concurrently (the store's group
   commit writes it in one transaction with one fsync per directory), then
   recorded as copied with the folder's new last UID.

Rules on the way: a message larger than `migration.max_message_size` is not
read and is reported as failed (a later run with a larger limit retries
it); one whose attachments exceed the Đ7.3.b limit is imported (it was
accepted once) and listed as oversized; flags the store cannot keep
(unknown system flags, a 27th keyword in a folder) are dropped with a note,
never the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mailserver.migrate.folders import Mapped, map_folders
from mailserver.migrate.report import AccountReport, FolderReport, Problem
from mailserver.migrate.sources import Candidate, Loaded, Source, digest_of
from mailserver.migrate.state import Intent, Pending, ProgressDB
from policy.attachments import attachment_bytes
from policy.errors import MailserverError, ValidationFailed
from policy.limits import attachments_fit
from policy.model import Policy
from policy.units import format_size
from storage.errors import FolderExists, KeywordLimit, OverQuota
from storage.index import split_flags
from storage.records import Account
from storage.session import MailboxSession
from storage.store import MailStore
from storage.storetypes import Stored

log = logging.getLogger("mailserver.migrate")


class Stop(Exception):
    """This account cannot go on now (quota, the store or the source failed); the report says why."""


@dataclass
class _Plan:
    mapped: Mapped
    uidvalidity: int
    by_digest: bool  # content-based resume (files; IMAP after a UIDVALIDITY change)
    candidates: list[Candidate]
    report: FolderReport


class Copier:
    def __init__(self, store: MailStore, policy: Policy, db: ProgressDB) -> None:
        self.store = store
        self.policy = policy
        self.rules = policy.migration
        self.db = db

    async def run(self, source: Source, account: Account, report: AccountReport,
                  on_change: Callable[[], None] = lambda: None) -> AccountReport:
        """Copy everything new; never raises for a problem of this account (the report says it)."""
        report.begin()
        job = f"{source.job_key} -> {account.address}"
        try:
            report.state = "connecting"
            on_change()
            await source.open()
            try:
                session = await self.store.session(account)
                report.state = "planning"
                on_change()
                plans = await self._plan(source, session, job, report)
                await self._preflight(account, report)
                report.state = "copying"
                on_change()
                for plan in plans:
                    await self._copy_folder(source, session, account, job, plan, report, on_change)
            finally:
                await source.close()
        except Stop as e:
            report.end("stopped", str(e))
        except MailserverError as e:
            report.end("stopped" if report.copied else "failed", f"{e.field}: {e.message}" if e.field else e.message)
        except Exception as e:  # one account's surprise must not end the others' migration
            log.exception("migration of %s failed", account.address)
            report.end("stopped" if report.copied else "failed", f"unexpected error: {e!r}")
        else:
            report.end("done")
        on_change()
        return report

    # ------------------------------------------------------------------ planning

    async def _plan(self, source: Source, session: MailboxSession, job: str, report: AccountReport) -> list[_Plan]:
        mapped = map_folders(await source.folders(), self.policy.folders, self.rules.special_folders)
        await self._ensure_targets(session, mapped, report)
        await self._recover(session, job, report)
        plans = []
        for m in mapped:
            uidvalidity, exists = await source.examine(m.source)
            before = await asyncio.to_thread(self.db.folder, job, m.source.key)
            await asyncio.to_thread(self.db.start_folder, job, m.source.key, m.target, uidvalidity)
            changed = before is not None and before.uidvalidity != uidvalidity
            if changed:
                report.warnings.append(Problem(m.target, None, f"the old server renumbered {m.source.key} "
                                               "(UIDVALIDITY changed): its messages are compared by content"))
            by_digest = not source.by_uid or changed
            after = 0 if by_digest or before is None else before.last_uid
            retry = [] if by_digest else await asyncio.to_thread(self.db.failed_uids, job, m.source.key, uidvalidity)
            candidates = await source.candidates(m.source, after, retry)
            folder_report = FolderReport("/".join(m.source.parts), m.target, m.how)
            if by_digest:
                candidates = await self._unseen(job, m.source.key, candidates, folder_report)
            elif before is not None:
                # settled by an interrupted run's recovery, above the last UID it had recorded
                done = await asyncio.to_thread(self.db.copied_uids, job, m.source.key, uidvalidity, after)
                candidates = [c for c in candidates if c.uid not in done]
                folder_report.skipped = max(0, exists - len(candidates))
            if retry:
                await asyncio.to_thread(self.db.clear_failed, job, m.source.key, uidvalidity, retry)
            report.folders.append(folder_report)
            report.skipped += folder_report.skipped
            report.planned_messages += len(candidates)
            report.planned_bytes += sum(c.size for c in candidates)
            plans.append(_Plan(m, uidvalidity, by_digest, candidates, folder_report))
        return plans

    async def _unseen(self, job: str, key: str, candidates: list[Candidate], fr: FolderReport) -> list[Candidate]:
        """Content-based resume: drop the candidates already copied (known digests, by count)."""
        copied = await asyncio.to_thread(self.db.copied_digests, job, key)
        seen: dict[str, int] = {}
        keep = []
        for c in candidates:
            if c.digest is None:
                keep.append(c)
                continue
            seen[c.digest] = seen.get(c.digest, 0) + 1
            if seen[c.digest] <= copied.get(c.digest, 0):
                fr.skipped += 1
            else:
                keep.append(c)
        return keep

    async def _ensure_targets(self, session: MailboxSession, mapped: list[Mapped], report: AccountReport) -> None:
        existing = {f.name for f in await session.list_folders() if f.selectable}
        for m in mapped:
            if m.target not in existing:
                with contextlib.suppress(FolderExists):
                    await session.create_folder(m.target, m.special_use if m.target in self.store.special else None)
                existing.add(m.target)
            await session.subscribe(m.target, True)
            if m.how == "same name" and m.target != "/".join(m.source.parts):
                report.warnings.append(Problem(m.target, None, f'folder name changed from "{"/".join(m.source.parts)}"'
                                               ' ("/" inside a level became "∕")'))

    async def _recover(self, session: MailboxSession, job: str, report: AccountReport) -> None:
        """Settle batches an interrupted run left pending: stored → copied, not stored → copy again."""
        pending = await asyncio.to_thread(self.db.pending, job)
        if not pending:
            return
        by_folder: dict[str, list[Pending]] = {}
        for p in pending:
            by_folder.setdefault(p.target, []).append(p)
        copied: list[tuple[int, int]] = []
        dropped: list[int] = []
        for target, rows in by_folder.items():
            floor = min(p.uidnext_before for p in rows)
            try:
                uids = [u for u in await session.uids(target) if u >= floor]
                metas = await session.metadata(target, uids) if uids else []
            except MailserverError:
                metas = []
            claimed: set[int] = set()
            sizes = {p.size for p in rows}
            digests: dict[int, str] = {}
            for meta in metas:
                if meta.size in sizes:
                    digests[meta.uid] = digest_of(await session.read(target, meta.uid))
            for p in rows:
                match = next((u for u, d in sorted(digests.items())
                              if d == p.digest and u >= p.uidnext_before and u not in claimed), None)
                if match is None:
                    dropped.append(p.id)
                else:
                    claimed.add(match)
                    copied.append((p.id, match))
        await asyncio.to_thread(self.db.finish_batch, job, "", copied, [], dropped, None)
        report.recovered += len(copied)
        if copied or dropped:
            report.warnings.append(Problem("", None, f"an interrupted run was settled: {len(copied)} messages were "
                                           f"already stored, {len(dropped)} are copied again"))

    async def _preflight(self, account: Account, report: AccountReport) -> None:
        """Đ7.3.b: the whole plan must fit in quota + allowance before the first message is copied."""
        usage = await self.store.usage(account)
        allowance = self._allowance(usage.quota)
        room = usage.quota + allowance - usage.bytes
        if report.planned_bytes > room:
            raise Stop(f"quota: the old mailbox has {format_size(report.planned_bytes)} to copy but "
                       f"{account.address} has {format_size(max(room, 0))} free ({format_size(usage.bytes)} of "
                       f"{format_size(usage.quota)} used, migration allowance {format_size(allowance)}); nothing "
                       f"was copied. Raise the quota (mailserver account set-quota {account.address} SIZE) or "
                       f"migration.quota_allowance_percent, then run again (Đ7.3.b)")

    def _allowance(self, quota: int) -> int:
        return quota * self.rules.quota_allowance_percent // 100

    # ------------------------------------------------------------------ copying

    async def _copy_folder(self, source: Source, session: MailboxSession, account: Account, job: str, plan: _Plan,
                           report: AccountReport, on_change: Callable[[], None]) -> None:
        key = plan.mapped.source.key
        todo = []
        for c in plan.candidates:
            if c.size > self.rules.max_message_size:
                reason = (f"message of {format_size(c.size)} is larger than migration.max_message_size "
                          f"({format_size(self.rules.max_message_size)}); not imported, retried by a later run")
                report.failed.append(Problem(plan.mapped.target, c.uid, reason, c.size))
                plan.report.failed += 1
                await asyncio.to_thread(self.db.record_failed, job, key, plan.uidvalidity, c.uid, c.size,
                                        plan.mapped.target, reason)
            else:
                todo.append(c)
        if plan.candidates and not todo:
            await asyncio.to_thread(self.db.finish_batch, job, key, [], [], [], max(c.uid for c in plan.candidates))
        batches = self._batches(todo)
        queue: asyncio.Queue[list[Loaded] | Exception | None] = asyncio.Queue(maxsize=1)

        async def reader() -> None:
            try:
                for batch in batches:
                    loaded = await source.load(plan.mapped.source, batch)
                    found = {m.uid for m in loaded}
                    for c in batch:
                        if c.uid not in found:
                            report.warnings.append(Problem(plan.mapped.target, c.uid,
                                                           "deleted on the old server during the migration"))
                    await queue.put(loaded)
                await queue.put(None)
            except Exception as e:  # handed to the writer, which stops the account
                await queue.put(e)  # (a cancellation is not caught: the writer has stopped reading)

        task = asyncio.create_task(reader())
        try:
            for batch in batches:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise item
                await self._store_batch(session, account, job, plan, batch, item, report)
                on_change()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _batches(self, todo: list[Candidate]) -> list[list[Candidate]]:
        out: list[list[Candidate]] = []
        current: list[Candidate] = []
        size = 0
        for c in todo:
            if current and (len(current) >= self.rules.batch_messages or size + c.size > self.rules.batch_bytes):
                out.append(current)
                current, size = [], 0
            current.append(c)
            size += c.size
        if current:
            out.append(current)
        return out

    async def _store_batch(self, session: MailboxSession, account: Account, job: str, plan: _Plan,
                           batch: list[Candidate], loaded: list[Loaded], report: AccountReport) -> None:
        target = plan.mapped.target
        key = plan.mapped.source.key
        if plan.by_digest:
            loaded = await self._drop_known(job, key, loaded, plan.report, report)
        digests = [digest_of(m.data) for m in loaded]
        uidnext = (await session.status(target)).uidnext
        ids = await asyncio.to_thread(self.db.begin_batch, job, key, plan.uidvalidity, target, uidnext,
                                      [Intent(m.uid, d, len(m.data)) for m, d in zip(loaded, digests, strict=True)])
        quota_allowance = self._allowance(await self.store.quota_of(account))
        outcomes = await asyncio.gather(*(self._append(account, target, m, quota_allowance, report)
                                          for m in loaded), return_exceptions=True)
        copied: list[tuple[int, int]] = []
        failed: list[tuple[int, str]] = []
        dropped: list[int] = []
        stop: str | None = None
        terminal: set[int] = set()
        for m, rid, outcome in zip(loaded, ids, outcomes, strict=True):
            if isinstance(outcome, Stored):
                copied.append((rid, outcome.uid))
                terminal.add(m.uid)
                report.copied += 1
                report.copied_bytes += len(m.data)
                plan.report.copied += 1
                self._check_attachments(target, m, report)
            elif isinstance(outcome, OverQuota):
                dropped.append(rid)
                stop = stop or (f"quota: {outcome.message}; copied so far is kept. Raise the quota (mailserver "
                                f"account set-quota {account.address} SIZE) and run again to continue")
            elif isinstance(outcome, ValidationFailed):
                failed.append((rid, f"{outcome.field}: {outcome.message}"))
                terminal.add(m.uid)
                report.failed.append(Problem(target, m.uid, f"{outcome.field}: {outcome.message}", len(m.data)))
                plan.report.failed += 1
            else:
                dropped.append(rid)
                stop = stop or f"the store could not take {target} UID {m.uid}: {outcome}"
        # the folder's last UID moves over every message that is settled, up to the first that is not
        loaded_uids = {m.uid for m in loaded}
        last = None
        for c in batch:
            if c.uid in loaded_uids and c.uid not in terminal:
                break
            last = c.uid
        await asyncio.to_thread(self.db.finish_batch, job, key, copied, failed, dropped, last)
        if stop:
            raise Stop(stop)

    async def _drop_known(self, job: str, key: str, loaded: list[Loaded], fr: FolderReport,
                          report: AccountReport) -> list[Loaded]:
        cands = [Candidate(m.uid, len(m.data), digest_of(m.data)) for m in loaded]
        before = fr.skipped
        keep = {c.uid for c in await self._unseen(job, key, cands, fr)}
        report.skipped += fr.skipped - before
        return [m for m in loaded if m.uid in keep]

    async def _append(self, account: Account, folder: str, m: Loaded, allowance: int,
                      report: AccountReport) -> Stored:
        flags, keywords, dropped = _usable_flags(m.flags)
        if dropped:
            report.warnings.append(Problem(folder, m.uid, f"flags the store cannot keep were left off: {dropped}"))
        try:
            return await self.store.import_message(account, m.data, folder=folder, flags=flags, keywords=keywords,
                                                   internal_date=m.internal_date, quota_allowance=allowance)
        except KeywordLimit:
            report.warnings.append(Problem(folder, m.uid, f"keywords left off (a Maildir folder keeps at most 26): "
                                           f"{' '.join(keywords)}"))
            return await self.store.import_message(account, m.data, folder=folder, flags=flags,
                                                   internal_date=m.internal_date, quota_allowance=allowance)

    def _check_attachments(self, folder: str, m: Loaded, report: AccountReport) -> None:
        """Đ7.3.b: old mail over the attachment limit is imported (accepted once already) but listed."""
        rules = self.policy.attachments
        if len(m.data) <= rules.max_total:
            return  # decoded attachments are never larger than the message
        total = attachment_bytes(m.data)
        if not attachments_fit(total, rules):
            report.oversized.append(Problem(folder, m.uid, f"attachments {format_size(total)} exceed the "
                                            f"{format_size(rules.max_total)} limit", len(m.data)))


def _usable_flags(raw: tuple[str, ...]) -> tuple[list[str], list[str], str]:
    """Split into system flags and keywords the store accepts; the rest (\\Recent, unknown
    backslash flags, keywords that are not atoms) is returned for the note."""
    flags: list[str] = []
    keywords: list[str] = []
    dropped: list[str] = []
    for f in raw:
        if f.lower() == "\\recent":
            continue
        try:
            split_flags([f])
        except ValidationFailed:
            dropped.append(f)
            continue
        (flags if f.startswith("\\") else keywords).append(f)
    return flags, keywords, " ".join(dropped)
