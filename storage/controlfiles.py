"""The small files beside the Maildir that make a lost index harmless.

Message files hold the message and its flags; these files hold what IMAP
must keep stable and the files cannot say, in Dovecot's formats so Dovecot
can take over a tree without renumbering anything:

* `dovecot-uidlist` (per folder): UIDVALIDITY, the next UID and one
  `uid :basename` line per message. New lines are appended (and flushed)
  before a UID is ever shown to anyone; the file is rewritten (atomically)
  only to drop lines of expunged messages. Readers take the next UID as
  the larger of the header's and the last line's + 1.
* `dovecot-keywords` (per folder): `N name` lines, the keyword behind the
  file-name letter a..z (N = 0..25).
* `subscriptions` (account root): subscribed folder names, one per line,
  in modified UTF-7 with `/` as the separator.
* `mailserver-special-use` (account root): `\\Sent<TAB>name` lines: the
  RFC 6154 attribute of folders whose use differs from the policy's
  default names (folders created with CREATE ... USE, or renamed ones).

All writers run inside the account index's write transaction, which is
what serialises them across worker processes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from storage import mutf7
from storage.maildir import replace_file

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
SUBSCRIPTIONS = "subscriptions"
SPECIAL_USE = "mailserver-special-use"


@dataclass
class UidList:
    uidvalidity: int
    nextuid: int
    records: dict[str, int] = field(default_factory=dict)  # base name -> uid

    @property
    def next_free(self) -> int:
        return max([self.nextuid, *(u + 1 for u in self.records.values())]) if self.records else self.nextuid


def read_uidlist(folder_dir: Path) -> UidList | None:
    """Parse `dovecot-uidlist` (version 3, or Courier's version 1); None if absent or unreadable."""
    try:
        text = (folder_dir / UIDLIST).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    lines = text.split("\n")
    header = lines[0].split()
    if not header:
        return None
    uidvalidity = nextuid = 0
    if header[0] == "3":
        for tok in header[1:]:
            if tok[:1] == "V" and tok[1:].isdigit():
                uidvalidity = int(tok[1:])
            elif tok[:1] == "N" and tok[1:].isdigit():
                nextuid = int(tok[1:])
    elif header[0] == "1" and len(header) >= 3 and header[1].isdigit() and header[2].isdigit():
        uidvalidity, nextuid = int(header[1]), int(header[2])
    else:
        return None
    if uidvalidity <= 0:
        return None
    result = UidList(uidvalidity, max(nextuid, 1))
    for line in lines[1:]:
        if not line:
            continue
        uid_text, _, rest = line.partition(" ")
        if not uid_text.isdigit():
            continue
        colon = rest.find(":")
        name = rest[colon + 1 :] if colon >= 0 else rest.split(" ")[-1]
        base = name.partition(":")[0]
        if base:
            result.records[base] = int(uid_text)
    return result


def _header(uidvalidity: int, nextuid: int) -> str:
    return f"3 V{uidvalidity} N{nextuid} G{secrets.token_hex(16)}\n"


def write_uidlist(folder_dir: Path, uidvalidity: int, nextuid: int, records: list[tuple[int, str]],
                  *, fsync: bool = True) -> None:
    """Write the whole file (new folder, rebuild, or compaction after expunges)."""
    body = "".join(f"{uid} :{base}\n" for uid, base in sorted(records))
    replace_file(folder_dir / UIDLIST, (_header(uidvalidity, nextuid) + body).encode("utf-8", "surrogateescape"),
                 fsync=fsync)


def append_uidlist(folder_dir: Path, records: list[tuple[int, str]], *, fsync: bool = True) -> None:
    """Record new UIDs. Flushed before the UIDs are committed to the index or returned."""
    if not records:
        return
    data = "".join(f"{uid} :{base}\n" for uid, base in records).encode("utf-8", "surrogateescape")
    fd = os.open(folder_dir / UIDLIST, os.O_RDWR | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # The last append was cut short (a full disk, a power cut): never glue a record onto
            # that broken line, where a reader could not find it. Readers skip the broken line.
            data = b"\n" + data
        view = memoryview(data)
        while view:  # a short write (disk nearly full) must not silently drop records
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_keywords(folder_dir: Path) -> list[str | None]:
    """Keyword names by letter index (0 = a); holes are None."""
    try:
        text = (folder_dir / KEYWORDS).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    found: dict[int, str] = {}
    for line in text.splitlines():
        num, _, name = line.partition(" ")
        if num.isdigit() and name and int(num) < 26:
            found[int(num)] = name
    return [found.get(i) for i in range(max(found) + 1)] if found else []


def write_keywords(folder_dir: Path, keywords: list[str | None], *, fsync: bool = True) -> None:
    text = "".join(f"{i} {name}\n" for i, name in enumerate(keywords) if name)
    replace_file(folder_dir / KEYWORDS, text.encode("utf-8"), fsync=fsync)


def _encode_name(name: str) -> str:
    return "/".join(mutf7.encode(p) for p in name.split("/"))


def _decode_name(text: str) -> str | None:
    try:
        return "/".join(mutf7.decode(p) for p in text.split("/"))
    except ValueError:
        return None


def read_subscriptions(root: Path) -> set[str]:
    try:
        text = (root / SUBSCRIPTIONS).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return set()
    names = (_decode_name(line.strip()) for line in text.splitlines() if line.strip())
    return {n for n in names if n}


def write_subscriptions(root: Path, names: set[str], *, fsync: bool = True) -> None:
    text = "".join(_encode_name(n) + "\n" for n in sorted(names))
    replace_file(root / SUBSCRIPTIONS, text.encode("ascii"), fsync=fsync)


def read_special_use(root: Path) -> dict[str, str]:
    """Folder name -> special-use attribute."""
    try:
        text = (root / SPECIAL_USE).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        use, sep, encoded = line.partition("\t")
        name = _decode_name(encoded) if sep else None
        if name and use.startswith("\\"):
            out[name] = use
    return out


def write_special_use(root: Path, uses: dict[str, str], *, fsync: bool = True) -> None:
    text = "".join(f"{use}\t{_encode_name(name)}\n" for name, use in sorted(uses.items()))
    replace_file(root / SPECIAL_USE, text.encode("ascii"), fsync=fsync)

