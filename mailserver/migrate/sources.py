"""Where old mail comes from: an IMAP server, an mbox file, a Maildir tree, a folder of .eml files.

Each source answers the same few questions for the copier (`copier.py`):
its folders, a folder's UIDVALIDITY, the messages to consider (UID, size,
and for files their SHA-256), and the bytes, flags and internal date of a
batch. IMAP UIDs are stable within a UIDVALIDITY, so an IMAP folder resumes
from its last UID. Files have no such promise (an mbox may be rewritten,
a Maildir renamed), so file sources resume by content: a message whose
SHA-256 was already copied from that folder is skipped, counting true
duplicates, so two identical messages in the source stay two.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailserver.migrate.folders import INBOX, SourceName
from mailserver.migrate.imapclient import ImapEndpoint, ImapSource, SourceError
from storage import maildir as md
from storage.store import to_crlf


@dataclass
class Candidate:
    """A message the copier may copy: known before its bytes are read."""

    uid: int
    size: int
    digest: str | None = None  # known in advance for files (content-based resume)


@dataclass
class Loaded:
    uid: int
    data: bytes  # CRLF line ends, as the store keeps them
    flags: tuple[str, ...]
    internal_date: datetime | None


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Source(ABC):
    #: identifies the source mailbox in the progress database (with the target address)
    job_key: str
    #: True when UIDs are stable per UIDVALIDITY (IMAP): progress is the last UID
    by_uid: bool = False

    async def open(self) -> None:  # noqa: B027 - most sources need nothing
        """Connect and log in."""

    async def close(self) -> None:  # noqa: B027
        """Log out."""

    @abstractmethod
    async def folders(self) -> list[SourceName]: ...

    @abstractmethod
    async def examine(self, folder: SourceName) -> tuple[int, int]:
        """Select the folder; return its UIDVALIDITY (0 for files) and message count (-1: not known yet)."""

    @abstractmethod
    async def candidates(self, folder: SourceName, after_uid: int, retry: list[int]) -> list[Candidate]: ...

    @abstractmethod
    async def load(self, folder: SourceName, batch: list[Candidate]) -> list[Loaded]:
        """The batch's messages; one that has disappeared meanwhile is simply absent."""


# ------------------------------------------------------------------ IMAP


class ImapMailbox(Source):
    """One user's mailbox on the old IMAP server, read with EXAMINE only (nothing changes there)."""

    by_uid = True

    def __init__(self, endpoint: ImapEndpoint, user: str, password: str, master_user: str | None = None) -> None:
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.master_user = master_user
        self.imap = ImapSource(endpoint)
        # the mailbox, not the way to it: a rerun over another port or TLS mode must find its progress
        self.job_key = f"imap://{user}@{endpoint.host.lower().rstrip('.')}"
        self._selected: str | None = None
        self._exists = 0

    async def open(self) -> None:
        await self.imap.connect()
        try:
            await self.imap.login(self.user, self.password, master_user=self.master_user)
        except BaseException:
            await self.imap.close()
            raise

    async def close(self) -> None:
        await self.imap.close()

    async def folders(self) -> list[SourceName]:
        names = []
        for e in await self.imap.list():
            if e.selectable:
                names.append(SourceName(e.raw, tuple(e.parts), e.attributes))
        return names

    async def examine(self, folder: SourceName) -> tuple[int, int]:
        ex = await self.imap.examine(folder.key)
        self._selected = folder.key
        self._exists = ex.exists
        if ex.uidvalidity == 0:
            raise SourceError("folder", f"{self.endpoint.host} gave no UIDVALIDITY for {folder.key}")
        return ex.uidvalidity, ex.exists

    async def candidates(self, folder: SourceName, after_uid: int, retry: list[int]) -> list[Candidate]:
        await self._select(folder)
        found: dict[int, Candidate] = {}
        if self._exists:
            for m in await self.imap.fetch(f"{after_uid + 1}:*", "(UID RFC822.SIZE)"):
                if m.uid > after_uid:  # "n:*" always includes the highest UID (RFC 3501 §6.4.8)
                    found[m.uid] = Candidate(m.uid, m.size)
        for chunk in _chunks(retry, 500):
            for m in await self.imap.fetch(",".join(map(str, chunk)), "(UID RFC822.SIZE)"):
                found[m.uid] = Candidate(m.uid, m.size)
        return [found[u] for u in sorted(found)]

    async def load(self, folder: SourceName, batch: list[Candidate]) -> list[Loaded]:
        await self._select(folder)
        fetched = await self.imap.fetch(_uid_set(c.uid for c in batch), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        return [Loaded(m.uid, to_crlf(m.body), m.flags, m.internal_date) for m in fetched if m.body is not None]

    async def _select(self, folder: SourceName) -> None:
        if self._selected != folder.key:
            await self.examine(folder)


def _chunks(items: list[int], n: int) -> list[list[int]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _uid_set(uids: object) -> str:
    """Ascending UIDs as ranges: 1:5,7,9:12 (short commands for big batches)."""
    ordered = sorted(set(uids))  # type: ignore[call-overload]
    parts: list[str] = []
    start = prev = None
    for u in ordered:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = u
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


# ------------------------------------------------------------------ files


class _FileSource(Source):
    """Messages found in files: planned by reading and hashing each once, loaded by reading again."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._entries: dict[str, list[_Entry]] = {}

    async def examine(self, folder: SourceName) -> tuple[int, int]:
        return 0, -1

    async def candidates(self, folder: SourceName, after_uid: int, retry: list[int]) -> list[Candidate]:
        entries = await asyncio.to_thread(self._scan, folder)
        self._entries[folder.key] = entries
        return [Candidate(i, e.size, e.digest) for i, e in enumerate(entries, 1)]

    async def load(self, folder: SourceName, batch: list[Candidate]) -> list[Loaded]:
        entries = self._entries[folder.key]
        return await asyncio.to_thread(lambda: [self._read(entries[c.uid - 1], c.uid) for c in batch])

    @abstractmethod
    def _scan(self, folder: SourceName) -> list[_Entry]: ...

    @abstractmethod
    def _read(self, entry: _Entry, uid: int) -> Loaded: ...


@dataclass
class _Entry:
    where: Path
    offset: int
    length: int
    size: int
    digest: str
    flags: tuple[str, ...]
    internal_date: datetime | None


# ---- mbox (RFC 4155): Thunderbird, Outlook exports, old Unix mail spools

_FROM_LINE = re.compile(rb"^From \S*\s+(.*)$")
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
# headers the mbox format keeps for the mail program, not part of the message (Dovecot's and
# Thunderbird's mailbox state); their flags are read, then they are left out
_STATE_HEADERS = {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase",
                  b"x-mozilla-status", b"x-mozilla-status2", b"x-mozilla-keys"}


class MboxFile(_FileSource):
    def __init__(self, path: Path, folder: str = INBOX) -> None:
        super().__init__(path)
        if not self.path.is_file():
            raise SourceError("file", f"{path}: not a file")
        self.folder = folder
        self.job_key = f"mbox:{self.path}"

    async def folders(self) -> list[SourceName]:
        return [SourceName(str(self.path), tuple(self.folder.split("/")))]

    def _scan(self, folder: SourceName) -> list[_Entry]:
        entries: list[_Entry] = []
        with open(self.path, "rb") as fh:
            start: int | None = None
            date: datetime | None = None
            buf: list[bytes] = []
            offset = 0
            prev_blank = True
            for line in fh:
                m = _FROM_LINE.match(line.rstrip(b"\r\n")) if prev_blank and line.startswith(b"From ") else None
                if m:
                    if start is not None:
                        entries.append(self._entry(start, b"".join(buf), date))
                    start, buf, date = offset + len(line), [], _asctime(m.group(1))
                elif start is not None:
                    buf.append(line)
                offset += len(line)
                prev_blank = line in (b"\n", b"\r\n")
            if start is not None:
                entries.append(self._entry(start, b"".join(buf), date))
        if not entries:
            raise SourceError("file", f"{self.path}: no messages (not an mbox file: no 'From ' line)")
        return entries

    def _entry(self, start: int, raw: bytes, date: datetime | None) -> _Entry:
        data, flags = _unmbox(raw)
        return _Entry(self.path, start, len(raw), len(data), digest_of(data), flags, date)

    def _read(self, entry: _Entry, uid: int) -> Loaded:
        with open(entry.where, "rb") as f:
            f.seek(entry.offset)
            data, flags = _unmbox(f.read(entry.length))
        return Loaded(uid, data, flags, entry.internal_date)


def _unmbox(raw: bytes) -> tuple[bytes, tuple[str, ...]]:
    """One mbox entry -> the message as it was sent (CRLF), and the flags its state headers held."""
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]  # the blank line that separates entries (RFC 4155)
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    raw = _ESCAPED_FROM.sub(rb"\1", raw)  # mboxrd: ">From " -> "From ", ">>From " -> ">From "
    head_end = raw.find(b"\n\n")
    crlf_end = raw.find(b"\r\n\r\n")
    if crlf_end >= 0 and (head_end < 0 or crlf_end < head_end):
        head_end = crlf_end
    head, body = (raw, b"") if head_end < 0 else (raw[:head_end + 1], raw[head_end + 1:])
    kept: list[bytes] = []
    flags: set[str] = set()
    skipping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name, _, value = line.partition(b":")
        skipping = name.strip().lower() in _STATE_HEADERS
        if skipping:
            flags |= _state_flags(name.strip().lower(), value.strip())
        else:
            kept.append(line)
    return to_crlf(b"".join(kept) + body), tuple(sorted(flags))


def _state_flags(name: bytes, value: bytes) -> set[str]:
    text = value.decode("ascii", "replace")
    if name == b"status":
        return {"\\Seen"} if "R" in text else set()
    if name == b"x-status":
        letters = {"A": "\\Answered", "F": "\\Flagged", "D": "\\Deleted", "T": "\\Draft"}
        return {f for k, f in letters.items() if k in text}
    if name == b"x-keywords" or name == b"x-mozilla-keys":
        return {k for k in re.split(r"[\s,]+", text) if k}
    if name == b"x-mozilla-status":
        try:
            bits = int(text, 16)
        except ValueError:
            return set()
        # Thunderbird's nsMsgMessageFlags: Read 0x1, Replied 0x2, Marked 0x4, Expunged 0x8
        return {f for bit, f in ((1, "\\Seen"), (2, "\\Answered"), (4, "\\Flagged"), (8, "\\Deleted")) if bits & bit}
    return set()


def _asctime(text: bytes) -> datetime | None:
    """The date of an mbox "From " line: asctime, sometimes followed by a zone or year variants."""
    words = text.decode("ascii", "replace").split()
    for n in (5, 6):
        try:
            parsed = datetime.strptime(" ".join(words[:n][:5]), "%a %b %d %H:%M:%S %Y")
            return parsed.replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


# ---- Maildir and Maildir++ (Dovecot, Courier), and Dovecot's LAYOUT=fs


_DOVECOT_KEYWORDS = "dovecot-keywords"


class MaildirTree(_FileSource):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if not (self.path / "cur").is_dir() and not any(self.path.glob("*/cur")):
            raise SourceError("dir", f"{path}: not a Maildir (no cur/ folder)")
        self.job_key = f"maildir:{self.path}"
        self._dirs: dict[str, Path] = {}

    async def folders(self) -> list[SourceName]:
        found: list[SourceName] = []
        if (self.path / "cur").is_dir():
            found.append(SourceName("", (INBOX,)))
            self._dirs[""] = self.path
        for child in sorted(self.path.iterdir()):
            if not child.is_dir() or child.name in md.SUBDIRS:
                continue
            if child.name.startswith(".") and (child / "cur").is_dir():
                # Maildir++: ".Sent", ".Dự án.2026" in modified UTF-7, Courier's ".INBOX.x" as well
                name = md.folder_from_dirname(child.name)
                if name is None:
                    continue
                parts = tuple(name.split(md.SEPARATOR))
                if parts[:1] == (INBOX,) and len(parts) > 1:
                    parts = parts[1:]
                found.append(SourceName(child.name, parts))
                self._dirs[child.name] = child
            elif not child.name.startswith("."):
                found.extend(self._fs_layout(child, ()))  # Dovecot LAYOUT=fs: Sent/cur, Dự án/2026/cur
        return found

    def _fs_layout(self, d: Path, above: tuple[str, ...]) -> list[SourceName]:
        parts = (*above, _decode_level(d.name))
        out: list[SourceName] = []
        if (d / "cur").is_dir():
            key = str(d.relative_to(self.path))
            out.append(SourceName(key, parts))
            self._dirs[key] = d
        for child in sorted(d.iterdir()):
            if child.is_dir() and child.name not in md.SUBDIRS and not child.name.startswith("."):
                out.extend(self._fs_layout(child, parts))
        return out

    def _scan(self, folder: SourceName) -> list[_Entry]:
        d = self._dirs[folder.key]
        keywords = _read_keywords(d / _DOVECOT_KEYWORDS)
        order = _uidlist_order(d / "dovecot-uidlist")
        files = []
        for sub in ("cur", "new"):
            sd = d / sub
            if not sd.is_dir():
                continue
            for entry in os.scandir(sd):
                if entry.is_file() and not entry.name.startswith("."):
                    files.append((sub, entry.name, Path(entry.path)))
        files.sort(key=lambda f: (order.get(f[1].split(":")[0], 1 << 62), f[1]))
        out = []
        for sub, name, path in files:
            try:
                raw = path.read_bytes()
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue  # moved by a running server: a later run finds it
            data = to_crlf(raw)
            flags = _maildir_flags(name, keywords) if sub == "cur" else ()
            out.append(_Entry(path, 0, len(raw), len(data), digest_of(data), flags,
                              datetime.fromtimestamp(mtime, UTC)))
        return out

    def _read(self, entry: _Entry, uid: int) -> Loaded:
        return Loaded(uid, to_crlf(entry.where.read_bytes()), entry.flags, entry.internal_date)


def _decode_level(name: str) -> str:
    try:
        from storage import mutf7

        return mutf7.decode(name)
    except ValueError:
        return name


def _read_keywords(path: Path) -> dict[str, str]:
    """dovecot-keywords: "0 $Label1" lines; letter a is keyword 0."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        num, _, word = line.partition(" ")
        if num.isdigit() and word and int(num) < 26:
            out[chr(ord("a") + int(num))] = word.strip()
    return out


def _uidlist_order(path: Path) -> dict[str, int]:
    """dovecot-uidlist: "UID base ..." lines give the order the old server showed."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    except FileNotFoundError:
        return {}
    order = {}
    for line in lines:
        uid, _, rest = line.partition(" ")
        if not uid.isdigit():
            continue
        if rest.startswith(":"):
            fname = rest[1:]
        elif " :" in rest:
            fname = rest.split(" :", 1)[1]
        else:
            continue
        order[fname.split(":")[0]] = int(uid)
    return order


def _maildir_flags(name: str, keywords: dict[str, str]) -> tuple[str, ...]:
    _, sep, info = name.rpartition(":2,")
    if not sep:
        return ()
    letters = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "T": "\\Deleted", "D": "\\Draft"}
    out = [letters[c] for c in info if c in letters]
    out += [keywords[c] for c in info if c in keywords]
    return tuple(out)


# ---- a folder of .eml files (Outlook/Thunderbird "save as"), sub-folders become sub-folders


class EmlFolder(_FileSource):
    def __init__(self, path: Path, folder: str = INBOX, seen: bool = False) -> None:
        super().__init__(path)
        if not self.path.is_dir():
            raise SourceError("dir", f"{path}: not a folder")
        self.folder = folder
        self.seen = seen
        self.job_key = f"eml:{self.path}"

    async def folders(self) -> list[SourceName]:
        out = []
        base = tuple(self.folder.split("/"))
        for d in [self.path, *sorted(p for p in self.path.rglob("*") if p.is_dir())]:
            if any(f.suffix.lower() == ".eml" for f in d.iterdir() if f.is_file()):
                rel = d.relative_to(self.path).parts
                out.append(SourceName(str(d.relative_to(self.path)) if rel else ".", base + tuple(rel)))
        if not out:
            raise SourceError("dir", f"{self.path}: no .eml files")
        return out

    def _scan(self, folder: SourceName) -> list[_Entry]:
        d = self.path / folder.key
        out = []
        for f in sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() == ".eml"):
            data = to_crlf(f.read_bytes())
            date = _header_date(data) or datetime.fromtimestamp(f.stat().st_mtime, UTC)
            out.append(_Entry(f, 0, 0, len(data), digest_of(data), ("\\Seen",) if self.seen else (), date))
        return out

    def _read(self, entry: _Entry, uid: int) -> Loaded:
        return Loaded(uid, to_crlf(entry.where.read_bytes()), entry.flags, entry.internal_date)


def _header_date(data: bytes) -> datetime | None:
    """The Date: header (an exported file's mtime is the day of the export, not of the mail)."""
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else 65536]
    m = re.search(rb"^Date:[ \t]*(.+(?:\r\n[ \t].+)*)", head, re.MULTILINE | re.IGNORECASE)
    if not m:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(m.group(1).decode("ascii", "replace").replace("\r\n", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
