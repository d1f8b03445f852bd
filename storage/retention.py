"""Đ8.2.b "chế độ xóa bỏ, lưu trữ": expunge what has been in a folder longer than its retention.

The time a message entered a folder is its file's change time: delivery,
COPY (a new link), MOVE (a rename) and a flag change (a rename) all set it,
as Dovecot's Maildir "save date" does. The internal date would not do: a
message received a year ago and deleted today would vanish from Trash the
same night. (A flag change in Trash therefore restarts the count; that
errs on the side of keeping mail.)

These run on the store's worker threads with the account's index lock held
(MailStore.saved_before / expunge_saved_before). The expunge goes through
the index's own STORE \\Deleted + UID EXPUNGE in one transaction, so IMAP
sessions see ordinary flag and expunge events.
"""

from __future__ import annotations

import os

from storage.index import AccountIndex, FolderRow


def _aged(index: AccountIndex, f: FolderRow, before: float) -> list[tuple[int, int]]:
    """(uid, size) of the messages put into the folder before `before` (epoch seconds)."""
    d = index.folder_dir(f)
    out = []
    for m in index._messages(f, "1"):
        try:
            changed = os.stat(d / m.subdir / m.name).st_ctime
        except FileNotFoundError:
            continue  # renamed meanwhile by another process: it was just touched, so not aged
        if changed < before:
            out.append((m.uid, m.size))
    return out


def saved_before(index: AccountIndex, name: str, before: float) -> tuple[int, int]:
    """(messages, bytes) that `expunge_saved_before` would remove now."""
    f = index.folder(name)  # brings the folder's rows in line with its files first
    with index.read():
        aged = _aged(index, f, before)
    return len(aged), sum(size for _, size in aged)


def expunge_saved_before(index: AccountIndex, name: str, before: float) -> tuple[int, int]:
    """Expunge the messages in the folder since before `before`; (messages, bytes)."""
    with index.write():
        aged = _aged(index, index.folder(name), before)
        uids = [uid for uid, _ in aged]
        if uids:
            index.store_flags(name, uids, ["\\Deleted"], "add", None)
            removed = set(index.expunge(name, uids))
            aged = [(uid, size) for uid, size in aged if uid in removed]
    return len(aged), sum(size for _, size in aged)
