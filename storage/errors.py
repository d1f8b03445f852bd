"""Refusals of the mail store, each with the field it concerns (see policy.errors).

SMTP maps `OverQuota` to 552 5.2.2 / 452 4.2.2 (policy `quota.over_quota`),
IMAP to `NO [OVERQUOTA]`; `FolderNotFound` to `NO [NONEXISTENT]`,
`FolderExists` to `NO [ALREADYEXISTS]`, `KeywordLimit` to `NO [LIMIT]`.
"""

from __future__ import annotations

from policy.errors import Conflict, MailserverError, NotFound, ValidationFailed
from policy.units import format_size


class OverQuota(MailserverError):
    """Đ7.3: the message does not fit in what is left of the mailbox's quota."""

    def __init__(self, address: str, used: int, quota: int, needed: int) -> None:
        super().__init__(
            "quota",
            f"mailbox {address} is full: {format_size(used)} of {format_size(quota)} used, "
            f"{format_size(needed)} more does not fit (Đ7.3)",
        )
        self.address = address
        self.used = used
        self.quota = quota
        self.needed = needed


class FolderNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__("folder", f'no folder "{name}"')
        self.name = name


class FolderExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__("folder", f'folder "{name}" already exists')
        self.name = name


class MessageNotFound(NotFound):
    """The UID does not exist (any more) in the folder."""

    def __init__(self, folder: str, uid: int) -> None:
        super().__init__("uid", f"no message with UID {uid} in {folder}")
        self.folder = folder
        self.uid = uid


class KeywordLimit(ValidationFailed):
    """Maildir keeps keywords as the letters a..z in file names: at most 26 per folder."""

    def __init__(self, folder: str) -> None:
        super().__init__("flags", f"folder {folder} already uses 26 keywords, the most Maildir can keep")


class StoreUnavailable(MailserverError):
    """A file-system or index failure: the caller should answer with a temporary error and retry."""
