"""Values the mail store returns: what SMTP, IMAP and the operators' tools see of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from policy.limits import percent_of
from storage.mime import Part

Flags = frozenset[str]
FlagMode = Literal["add", "remove", "replace"]
EventKind = Literal["new", "flags", "expunge", "folder-created", "folder-renamed", "folder-deleted"]


@dataclass(frozen=True)
class Stored:
    """Where a delivered message now is. Returned only after it is durably on disk and indexed."""

    folder: str
    uid: int
    uidvalidity: int
    size: int
    modseq: int = 0


@dataclass(frozen=True)
class Usage:
    """Exact usage of one mailbox (all folders) and its quota, in bytes (Đ7.3)."""

    bytes: int
    messages: int
    quota: int

    @property
    def percent(self) -> float:
        return percent_of(self.bytes, self.quota)


@dataclass(frozen=True)
class FolderUsage:
    name: str
    bytes: int
    messages: int


@dataclass(frozen=True)
class FolderInfo:
    """One LIST entry. `selectable` is False for a level that exists only because a child does
    (Maildir++ `.A.B` without `.A`: IMAP shows A as `\\Noselect` / `\\NonExistent`)."""

    name: str
    special_use: str | None
    subscribed: bool
    has_children: bool
    selectable: bool = True


@dataclass(frozen=True)
class FolderStatus:
    messages: int
    recent: int
    unseen: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    size: int
    deleted: int = 0


@dataclass(frozen=True)
class FolderSnapshot:
    """The state of a folder from the index alone (SELECT/EXAMINE): UIDs in ascending order."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: list[tuple[int, Flags, int]]  # (uid, flags and keywords, modseq)
    keywords: tuple[str, ...] = ()  # keywords defined in this folder (FLAGS / PERMANENTFLAGS)
    recent: frozenset[int] = frozenset()  # UIDs claimed as \Recent by this snapshot
    keywords_full: bool = False  # no new keyword can be created (no \* in PERMANENTFLAGS)


@dataclass(frozen=True)
class Changes:
    """CONDSTORE/QRESYNC: what changed after a MODSEQ.

    `expunged_exact` is False when the index no longer knows which UIDs were
    expunged that long ago (after a rebuild); `expunged` then lists every UID
    below UIDNEXT that does not exist, which RFC 7162 §3.2.5.1 allows.
    """

    changed: list[tuple[int, Flags, int]]
    expunged: list[int]
    highestmodseq: int
    expunged_exact: bool = True


class MessageMeta:
    """Everything FETCH needs without opening the file except body bytes.

    `envelope`: raw (unfolded, still RFC 2047-encoded) values of the ENVELOPE
    fields, keys as in `storage.mime.ENVELOPE_FIELDS`, None when absent.
    `structure`: the MIME tree with byte offsets (`storage.mime.Part`).
    `header_fields`: the cached header fields (lower-case name -> the field's
    lines exactly as in the file); `storage.mime.header_lines()` answers
    HEADER.FIELDS from it when every requested name is cached.

    The three parsed fields are decoded from the index on first access: a
    first sync of 10,000 messages asking only for flags, sizes and a few
    header fields does not pay for 10,000 MIME trees.
    """

    __slots__ = ("_envelope", "_header_fields", "_structure", "flags", "internal_date", "modseq", "size", "uid")

    def __init__(self, uid: int, size: int, internal_date: datetime, flags: Flags, modseq: int,
                 envelope: str | dict[str, str | None], structure: str | Part,
                 header_fields: str | dict[str, str]) -> None:
        self.uid = uid
        self.size = size
        self.internal_date = internal_date
        self.flags = flags
        self.modseq = modseq
        self._envelope = envelope
        self._structure = structure
        self._header_fields = header_fields

    @property
    def envelope(self) -> dict[str, str | None]:
        if isinstance(self._envelope, str):
            self._envelope = json.loads(self._envelope)
        return self._envelope  # type: ignore[return-value]

    @property
    def structure(self) -> Part:
        if isinstance(self._structure, str):
            self._structure = Part.from_obj(json.loads(self._structure))
        return self._structure

    @property
    def header_fields(self) -> dict[str, str]:
        if isinstance(self._header_fields, str):
            self._header_fields = json.loads(self._header_fields)
        return self._header_fields  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"MessageMeta(uid={self.uid}, size={self.size}, flags={sorted(self.flags)}, modseq={self.modseq})"


@dataclass(frozen=True)
class CopyResult:
    dest_uidvalidity: int
    pairs: list[tuple[int, int]]  # (source uid, new uid) in source order (COPYUID / MOVE)


@dataclass(frozen=True)
class Event:
    """A change in one account, delivered to `MailStore.subscribe` listeners.

    `folder` is the folder affected (for "folder-renamed" the new name, with
    the old one in `old_name`); `uids` the messages; `modseq` the folder's
    HIGHESTMODSEQ after the change.
    """

    kind: EventKind
    folder: str
    uids: tuple[int, ...] = ()
    modseq: int = 0
    old_name: str | None = None
    account_id: int = 0


@dataclass(frozen=True)
class Drift:
    """`quota recalc`: what the index said, what the disk holds."""

    address: str
    recorded_bytes: int
    recorded_messages: int
    disk_bytes: int
    disk_messages: int

    @property
    def drift_bytes(self) -> int:
        return self.disk_bytes - self.recorded_bytes

    @property
    def drift_messages(self) -> int:
        return self.disk_messages - self.recorded_messages


@dataclass(frozen=True)
class ReindexResult:
    address: str
    folders: int
    messages: int
    bytes: int
    seconds: float
    folder_names: list[str] = field(default_factory=list)
