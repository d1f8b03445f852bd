"""Which of our folders each old folder becomes (Đ8.2.d; Đ11: Vietnamese names kept as they are).

Pure functions over names, so the mapping is tested with plain lists and
shown to the operator before anything is copied.

* INBOX stays INBOX. When every other folder sits under `INBOX.` (Courier,
  Cyrus and some Dovecot setups put the personal namespace there), that
  prefix is dropped: users never saw it as a level of its own.
* Special folders become the policy's (`folders.sent` ...): first by the
  RFC 6154 attribute the old server sends (`\\Sent`, `\\Trash` ...); for a
  kind no folder is marked with, by the common names of
  `migration.special_folders` ("Sent Items", "Deleted Items", "Thư đã gửi"
  ...), compared without case and diacritics. Only top-level folders are
  matched by name ("Dự án/Sent" is somebody's own folder). Their
  sub-folders move along ("Sent Items/2019" → "Sent/2019").
* Other names keep every character; the old server's separator becomes
  ours (`/`). A `/` inside one level of a server that uses `.` would make a
  new level here, so it becomes "∕" (U+2215, which looks the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policy.model import FolderNames, SpecialFolderNames
from policy.naming import fold

SEPARATOR = "/"
INBOX = "INBOX"
KINDS = ("sent", "drafts", "trash", "junk", "archive")
ATTRIBUTE_KIND = {"\\sent": "sent", "\\drafts": "drafts", "\\trash": "trash", "\\junk": "junk",
                  "\\archive": "archive"}
KIND_USE = {"sent": "\\Sent", "drafts": "\\Drafts", "trash": "\\Trash", "junk": "\\Junk", "archive": "\\Archive"}


@dataclass(frozen=True)
class SourceName:
    """A folder of the old server: its levels (already decoded to Unicode) and RFC 6154 attributes."""

    key: str  # how the old server names it (state key, EXAMINE argument)
    parts: tuple[str, ...]
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Mapped:
    source: SourceName
    target: str
    special_use: str | None  # the special-use of the target folder, when it is one of ours
    how: str  # "inbox", "special-use", "name", "sub-folder of a special folder", "same name"


def map_folders(sources: Iterable[SourceName], ours: FolderNames, names: SpecialFolderNames) -> list[Mapped]:
    items = list(sources)
    strip_inbox = _inbox_prefixed(items)
    marked = {ATTRIBUTE_KIND[a.lower()] for s in items for a in s.attributes if a.lower() in ATTRIBUTE_KIND}
    by_name = {fold(n): kind for kind in KINDS if kind not in marked for n in getattr(names, kind)}
    # top-level old folders that become one of ours, and the kind each becomes
    special: dict[tuple[str, ...], str] = {}
    for s in items:
        parts = _visible(s.parts, strip_inbox)
        if not parts or parts == (INBOX,):
            continue
        kind = next((ATTRIBUTE_KIND[a.lower()] for a in s.attributes if a.lower() in ATTRIBUTE_KIND), None)
        if kind is None and len(parts) == 1:
            kind = by_name.get(fold(parts[0]))
        if kind is not None:
            special[parts] = kind
    out = []
    for s in items:
        parts = _visible(s.parts, strip_inbox)
        if not parts or parts == (INBOX,):
            out.append(Mapped(s, INBOX, None, "inbox"))
            continue
        kind = special.get(parts)
        if kind is not None:
            how = "special-use" if any(a.lower() in ATTRIBUTE_KIND for a in s.attributes) else "name"
            out.append(Mapped(s, getattr(ours, kind), KIND_USE[kind], how))
            continue
        parent = next((parts[:i] for i in range(len(parts) - 1, 0, -1) if parts[:i] in special), None)
        if parent is not None:
            base = getattr(ours, special[parent])
            out.append(Mapped(s, SEPARATOR.join([base, *(_level(p) for p in parts[len(parent):])]), None,
                              "sub-folder of a special folder"))
            continue
        out.append(Mapped(s, SEPARATOR.join(_level(p) for p in parts), None, "same name"))
    return out


def _inbox_prefixed(items: list[SourceName]) -> bool:
    others = [s for s in items if tuple(p.upper() for p in s.parts[:1]) != (INBOX,) or len(s.parts) > 1]
    others = [s for s in others if not (len(s.parts) == 1 and s.parts[0].upper() == INBOX)]
    return bool(others) and all(len(s.parts) > 1 and s.parts[0].upper() == INBOX for s in others)


def _visible(parts: tuple[str, ...], strip_inbox: bool) -> tuple[str, ...]:
    if parts and parts[0].upper() == INBOX:
        if len(parts) == 1:
            return (INBOX,)
        if strip_inbox:
            return parts[1:]
        return (INBOX, *parts[1:])
    return parts


def _level(part: str) -> str:
    return part.replace(SEPARATOR, "\u2215")
