"""One IMAP connection's view of a mailbox: folders, snapshots, metadata, bytes, flags, copy/move/expunge.

A session is a thin object: it keeps no connection or state between calls
(every call goes through the store's shared, pooled account index), so
1,000 idle clients cost nothing but these objects. Folder names are
Unicode with "/" as the separator; IMAP does the modified UTF-7.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from storage.errors import MessageNotFound
from storage.events import Listener
from storage.mime import decode_words, field_value, fold, header_end, parse_fields
from storage.records import Account
from storage.storetypes import (
    Changes,
    CopyResult,
    FlagMode,
    Flags,
    FolderInfo,
    FolderSnapshot,
    FolderStatus,
    MessageMeta,
    Stored,
    Usage,
)

if TYPE_CHECKING:
    from storage.store import MailStore

HEADER_PROBE = 64 * 1024  # bytes read to find a header that is not in the index


class MailboxSession:
    def __init__(self, store: MailStore, account: Account) -> None:
        self.store = store
        self.account = account
        self._listeners: list[Listener] = []

    async def _call(self, method: str, *args: object, **kwargs: object) -> object:
        return await self.store._call(self.account, method, *args, **kwargs)

    # ------------------------------------------------------------------ folders

    async def list_folders(self) -> list[FolderInfo]:
        return await self._call("list_folders")  # type: ignore[return-value]

    async def create_folder(self, name: str, special_use: str | None = None) -> None:
        """Creates missing parent levels too (RFC 3501 §6.3.3). `special_use`: RFC 6154 CREATE-SPECIAL-USE."""
        await self._call("create_folder", name, special_use)

    async def rename_folder(self, old: str, new: str) -> None:
        """Children move along; renaming INBOX moves its messages into a new folder (RFC 3501 §6.3.5)."""
        await self._call("rename_folder", old, new)

    async def delete_folder(self, name: str) -> None:
        await self._call("delete_folder", name)

    async def subscribe(self, name: str, on: bool = True) -> None:
        await self._call("subscribe", name, on)

    # ------------------------------------------------------------------ reading

    async def status(self, folder: str) -> FolderStatus:
        return await self._call("status", folder)  # type: ignore[return-value]

    async def snapshot(self, folder: str, claim_recent: bool = False) -> FolderSnapshot:
        """SELECT: UIDs, flags and MODSEQs from the index only. `claim_recent=True` makes this
        session the one that sees the folder's new messages as \\Recent (RFC 3501)."""
        return await self._call("snapshot", folder, claim_recent)  # type: ignore[return-value]

    async def changes_since(self, folder: str, modseq: int) -> Changes:
        return await self._call("changes_since", folder, modseq)  # type: ignore[return-value]

    async def metadata(self, folder: str, uids: Iterable[int]) -> list[MessageMeta]:
        return await self._call("metadata", folder, list(uids))  # type: ignore[return-value]

    async def uids(self, folder: str) -> list[int]:
        return await self._call("uids", folder)  # type: ignore[return-value]

    async def read(self, folder: str, uid: int) -> bytes:
        return await self.read_range(folder, uid, 0, None)

    async def read_range(self, folder: str, uid: int, start: int, length: int | None) -> bytes:
        """Bytes [start, start+length) of the message file (a BODY[...]<partial> or a MIME part by its
        offsets from `metadata`). The file is read off the account lock, so a big message does not
        hold up the account's other sessions."""
        for rescan in (False, True):
            path, _size = await self._call("locate", folder, uid, rescan=rescan)
            try:
                return await self.store._run(_read, path, start, length)  # type: ignore[arg-type]
            except FileNotFoundError:
                continue  # renamed by a flag change meanwhile: look again
        raise MessageNotFound(folder, uid)

    # ------------------------------------------------------------------ changing

    async def store_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str],
                          keywords: Iterable[str] = (), *, mode: FlagMode = "add",
                          unchanged_since: int | None = None) -> tuple[list[tuple[int, Flags, int]], list[int]]:
        """STORE: flags and keywords together (`\\Seen`, `$Forwarded`, ...). Returns the messages that
        changed (uid, all flags now, new MODSEQ) and those refused by UNCHANGEDSINCE (RFC 7162)."""
        return await self._call("store_flags", folder, list(uids), [*flags, *keywords], mode,  # type: ignore[return-value]
                                unchanged_since)

    async def copy(self, folder: str, uids: Iterable[int], dest: str) -> CopyResult:
        """COPY; quota is checked first (the copy counts, as in every IMAP server's quota), and a copy
        that takes the mailbox across a Đ7.3.c threshold brings the warning as a delivery would."""
        from storage.store import unavailable_on_failure

        with unavailable_on_failure(self.account):
            async with self.store.pool.use(self.account) as h:
                quota = await self.store.quota_of(self.account)
                result, crossed = await h.call(h.index.copy, folder, list(uids), dest, quota)
        if crossed is not None:
            await self.store._warn(self.account, crossed)
        return result

    async def move(self, folder: str, uids: Iterable[int], dest: str) -> CopyResult:
        return await self._call("move", folder, list(uids), dest)  # type: ignore[return-value]

    async def expunge(self, folder: str, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only those among `uids`: UID EXPUNGE)."""
        return await self._call("expunge", folder, None if uids is None else list(uids))  # type: ignore[return-value]

    async def append(self, folder: str, message: bytes, flags: Iterable[str] = frozenset(),
                     keywords: Iterable[str] = frozenset(), internal_date: datetime | None = None) -> Stored:
        """APPEND: the same durable path as delivery, quota checked; not "receiving" activity."""
        return await self.store.import_message(self.account, message, folder=folder, flags=flags, keywords=keywords,
                                               internal_date=internal_date)

    # ------------------------------------------------------------------ search

    async def search_text(self, folder: str, query: str, where: str = "text",
                          uids: Iterable[int] | None = None) -> set[int]:
        """SEARCH TEXT/BODY/SUBJECT/FROM/TO/CC/BCC/HEADER, case- and diacritic-insensitive
        ("nguyen" finds "Nguyễn"). `where`: "text", "body" or "header:<name>". Subject and address
        headers are substring matches from the index; BODY/TEXT use the full-text index (word
        prefixes, as Dovecot's FTS); other headers are read from the files' headers."""
        wanted = None if uids is None else list(uids)
        found = await self._call("search", folder, query, where, wanted)
        if found is not None:
            return found  # type: ignore[return-value]
        name = where[7:].lower()
        q = fold(query)
        matches: set[int] = set()
        for uid in wanted if wanted is not None else await self.uids(folder):
            try:
                head = await self.read_range(folder, uid, 0, HEADER_PROBE)
            except MessageNotFound:
                continue
            end = header_end(head, 0, len(head))
            if end == len(head) and len(head) == HEADER_PROBE:
                head = await self.read(folder, uid)
                end = header_end(head, 0, len(head))
            for fname, raw in parse_fields(head[:end]):
                if fname == name and q in fold(decode_words(field_value(raw))):
                    matches.add(uid)
                    break
        return matches

    # ------------------------------------------------------------------ the account

    async def usage(self) -> Usage:
        """QUOTA/GETQUOTAROOT (RFC 9208): the whole mailbox is one quota root."""
        return await self.store.usage(self.account)

    def subscribe_events(self, listener: Listener) -> None:
        self.store.subscribe(self.account, listener)
        self._listeners.append(listener)

    def close(self) -> None:
        """Drop this session's listeners (IMAP LOGOUT or a dropped connection)."""
        for listener in self._listeners:
            self.store.unsubscribe(self.account, listener)
        self._listeners.clear()


def _read(path: os.PathLike[str], start: int, length: int | None) -> bytes:
    with open(path, "rb") as fh:
        if start:
            fh.seek(start)
        return fh.read() if length is None else fh.read(length)
