"""The record of archived mailboxes (Đ5.3.b) and their purge after `retirement.archive_keep`.

The archive files themselves are written by `storage.archive` through
`MailStore.archive_mailbox`; this table says which account each belongs to,
when it may be purged, and whether it was (by whom). A purge deletes the
files and keeps the row, so the audit trail still knows the archive existed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from storage.archive import ArchiveResult
from storage.directory import Directory
from storage.records import Account, parse_date, parse_ts, ts


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    account_id: int
    address: str
    path: Path
    manifest_path: Path
    created_at: datetime
    revoked_on: date
    purge_after: date
    messages: int
    bytes: int
    archive_bytes: int
    sha256: str
    purged_at: datetime | None
    purged_by: str | None

    def due(self, today: date) -> bool:
        return self.purged_at is None and today >= self.purge_after

    def public(self) -> dict[str, object]:
        return {
            "id": self.id, "address": self.address, "path": str(self.path), "manifest": str(self.manifest_path),
            "revoked_on": self.revoked_on.isoformat(), "purge_after": self.purge_after.isoformat(),
            "messages": self.messages, "bytes": self.bytes, "archive_bytes": self.archive_bytes,
            "sha256": self.sha256, "created_at": self.created_at, "purged_at": self.purged_at,
            "purged_by": self.purged_by,
        }


def _entry(r: object) -> ArchiveEntry:
    g = r.__getitem__  # type: ignore[attr-defined]
    return ArchiveEntry(
        id=g("id"), account_id=g("account_id"), address=g("address"), path=Path(g("path")),
        manifest_path=Path(g("manifest_path")), created_at=parse_ts(g("created_at")),  # type: ignore[arg-type]
        revoked_on=parse_date(g("revoked_on")), purge_after=parse_date(g("purge_after")),  # type: ignore[arg-type]
        messages=g("messages"), bytes=g("bytes"), archive_bytes=g("archive_bytes"), sha256=g("sha256"),
        purged_at=parse_ts(g("purged_at")), purged_by=g("purged_by"),
    )


class ArchiveRecords:
    def __init__(self, directory: Directory, clock: Callable[[], datetime]) -> None:
        self.directory = directory
        self.db = directory.db
        self.clock = clock

    async def add(self, account: Account, result: ArchiveResult, revoked_on: date, purge_after: date, *,
                  actor: str) -> ArchiveEntry:
        m = result.manifest
        async with self.db.transaction():
            aid = await self.db.execute(
                "INSERT INTO archives (account_id, address, path, manifest_path, created_at, revoked_on, "
                "purge_after, messages, bytes, archive_bytes, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (account.id, account.address, str(result.path), str(result.manifest_path), ts(self.clock()),
                 revoked_on.isoformat(), purge_after.isoformat(), m.messages, m.total_bytes, result.archive_bytes,
                 result.sha256),
            )
            entry = await self._get(aid)
            await self.directory.audit_within(actor, "account.archive", account.address, after=entry.public(),
                                              rule="Đ5.3.b: archived, not deleted")
        return entry

    async def _get(self, aid: int) -> ArchiveEntry:
        row = await self.db.fetchone("SELECT * FROM archives WHERE id=?", (aid,))
        assert row is not None
        return _entry(row)

    async def of_account(self, account_id: int) -> list[ArchiveEntry]:
        rows = await self.db.fetchall("SELECT * FROM archives WHERE account_id=? ORDER BY id", (account_id,))
        return [_entry(r) for r in rows]

    async def list(self, *, address: str | None = None, include_purged: bool = False) -> list[ArchiveEntry]:
        sql, params = "SELECT * FROM archives WHERE 1=1", []
        if address:
            sql += " AND address=?"
            params.append(address)
        if not include_purged:
            sql += " AND purged_at IS NULL"
        rows = await self.db.fetchall(sql + " ORDER BY revoked_on, id", params)
        return [_entry(r) for r in rows]

    async def purge(self, entry: ArchiveEntry, *, actor: str) -> ArchiveEntry:
        """Delete the archive's files and record it (the caller checked `due`)."""
        for path in (entry.path, entry.manifest_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        async with self.db.transaction():
            await self.db.execute("UPDATE archives SET purged_at=?, purged_by=? WHERE id=?",
                                  (ts(self.clock()), actor, entry.id))
            after = await self._get(entry.id)
            await self.directory.audit_within(actor, "account.purge-archive", entry.address, before=entry.public(),
                                              after=after.public(), rule="Đ5.3.b: retirement.archive_keep passed")
        return after
