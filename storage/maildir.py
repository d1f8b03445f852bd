"""Maildir++ on disk: folder directory names, message file names, durable writes.

The layout is the one Dovecot and Courier read (`cur/ new/ tmp/` per
folder, sub-folders as `.Name.Child` directories beside the INBOX's
`cur/`), so backups, migrations and other servers can use the tree as it
is. Everything here is synchronous file-system code; the store runs it in
its worker threads.

Folder names. The public separator is `/`; on disk the Maildir++
separator is `.`. Each component is encoded in modified UTF-7 (what both
Dovecot and Courier use on disk), then `\\` and `.` inside it are written as
`\\5c` and `\\2e` (Dovecot's listescape convention), so every public name
maps to exactly one directory and back:

    "Sent"              -> .Sent
    "Dự án/2026"        -> .D&Hu8- &AOE-n.2026
    "v1.2"              -> .v1\\2e2
    "INBOX"             -> the account root itself

Message files. A file is named `<base>:2,<info>` where `<base>` is unique
(`<seconds>.M<µs>P<pid>Q<n>R<random>.<host>,S=<size>,W=<size>`) and never
changes, and `<info>` holds the Maildir flags in ASCII order: upper-case
letters for system flags (D draft, F flagged, P passed, R replied/answered,
S seen, T trashed/deleted), then lower-case letters a..z for keywords as
numbered in the folder's `dovecot-keywords` file.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import time
from pathlib import Path

from policy.errors import ValidationFailed
from storage import mutf7

INBOX = "INBOX"
SEPARATOR = "/"
MAX_DIRNAME = 255  # bytes, ext4's limit for one directory entry
SUBDIRS = ("cur", "new", "tmp")
# Prefix of a folder being deleted: it can never decode as a folder (empty first component).
TRASH_PREFIX = "..mailserver-deleted-"

# System flags as bits of the index's `flags` column, and their Maildir letters.
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, PASSED = 1, 2, 4, 8, 16, 32
FLAG_BITS = {"\\Seen": SEEN, "\\Answered": ANSWERED, "\\Flagged": FLAGGED, "\\Deleted": DELETED, "\\Draft": DRAFT}
LETTER_BITS = {"S": SEEN, "R": ANSWERED, "F": FLAGGED, "T": DELETED, "D": DRAFT, "P": PASSED}
BIT_LETTERS = sorted(((bit, letter) for letter, bit in LETTER_BITS.items()), key=lambda p: p[1])
MAX_KEYWORDS = 26  # a..z in the file name
INFO_SEP = ":2,"

_SIZE_RE = re.compile(r",S=(\d+)")


# ------------------------------------------------------------------ folder names


def normalize_folder(name: str, field: str = "folder") -> str:
    """Check a public folder name and return its canonical form ("inbox" -> "INBOX")."""
    if not isinstance(name, str) or not name:
        raise ValidationFailed(field, "a folder needs a name")
    parts = name.split(SEPARATOR)
    if any(p == "" for p in parts):
        raise ValidationFailed(field, f'"{name}": empty level (leading, trailing or double "/")')
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ValidationFailed(field, f'"{name}": control characters are not allowed in folder names')
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    if any(p in (".", "..") for p in parts):
        raise ValidationFailed(field, f'"{name}": "." and ".." are not folder names')
    canonical = SEPARATOR.join(parts)
    if canonical != INBOX and len(folder_dirname(canonical).encode()) > MAX_DIRNAME:
        raise ValidationFailed(field, f'"{name}" is too long to store')
    return canonical


def _escape(component: str) -> str:
    return mutf7.encode(component).replace("\\", "\\5c").replace(".", "\\2e")


def _unescape(component: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return chr(int(m.group(1), 16))

    return mutf7.decode(re.sub(r"\\([0-9a-fA-F]{2})", sub, component))


def folder_dirname(name: str) -> str:
    """Public name -> directory name under the account root ("" for INBOX)."""
    if name == INBOX:
        return ""
    return "." + ".".join(_escape(p) for p in name.split(SEPARATOR))


def folder_from_dirname(dirname: str) -> str | None:
    """Directory name -> public name, or None if it is not a Maildir++ folder."""
    if dirname == "":
        return INBOX
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts = dirname[1:].split(".")
    if any(p == "" for p in parts):
        return None
    try:
        return SEPARATOR.join(_unescape(p) for p in parts)
    except ValueError:
        return None


def parent_names(name: str) -> list[str]:
    """"a/b/c" -> ["a", "a/b"]: the levels above a folder."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


# ------------------------------------------------------------------ message file names

_counter = itertools.count()
# Chosen once per process: pid and counter already make names unique on this host (os.urandom per
# message cost ~0.2 ms in this VM).
_RANDOM = secrets.token_hex(4)
_host = socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "\\054") or "localhost"


def unique_base(size: int, now: float | None = None) -> str:
    """A base name no other delivery on any host can produce (Maildir's rule: time, pid, a per-process
    counter, plus a per-process random part against pid reuse after a crash)."""
    now = time.time() if now is None else now
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return (f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}R{_RANDOM}.{_host}"
            f",S={size},W={size}")


def split_name(name: str) -> tuple[str, str | None]:
    """File name -> (base, info letters or None when the file has no `:2,` part)."""
    base, sep, info = name.partition(INFO_SEP)
    if sep:
        return base, info
    # ":1," (experimental) or no info at all: no flags
    return name.partition(":")[0], None


def size_from_base(base: str) -> int | None:
    m = _SIZE_RE.search(base)
    return int(m.group(1)) if m else None


def parse_info(info: str | None) -> tuple[int, int]:
    """Info letters -> (system flag bits, keyword bits)."""
    flags = keywords = 0
    for ch in info or "":
        if "a" <= ch <= "z":
            keywords |= 1 << (ord(ch) - ord("a"))
        else:
            flags |= LETTER_BITS.get(ch, 0)
    return flags, keywords


def format_info(flags: int, keywords: int) -> str:
    letters = "".join(letter for bit, letter in BIT_LETTERS if flags & bit)
    letters += "".join(chr(ord("a") + i) for i in range(MAX_KEYWORDS) if keywords >> i & 1)
    return letters


def cur_name(base: str, flags: int, keywords: int) -> str:
    return f"{base}{INFO_SEP}{format_info(flags, keywords)}"


# ------------------------------------------------------------------ durable file operations


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mtime: float | None = None, fsync: bool = True) -> None:
    """Create `path` (must not exist), write, set its mtime, flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Atomically replace a small control file: write beside it, flush, rename over it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    write_file(tmp, data, fsync=fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def make_maildir(path: Path, *, subfolder: bool, fsync: bool = True) -> bool:
    """Create cur/new/tmp (and Maildir++'s `maildirfolder` marker); True if anything was created."""
    created = False
    if not path.exists():
        path.mkdir(parents=True, mode=0o750)
        created = True
    for sub in SUBDIRS:
        p = path / sub
        if not p.is_dir():
            p.mkdir(mode=0o750)
            created = True
    if subfolder and not (path / "maildirfolder").exists():
        (path / "maildirfolder").touch(mode=0o640)
        created = True
    if created and fsync:
        fsync_dir(path)
        fsync_dir(path.parent)
    return created


def dir_mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return -1
