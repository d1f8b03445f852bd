"""A consistent backup of a live data directory, and its restore (`mailserver backup` / `restore`).

A backup must restore to a server that works, not to a heap of files copied
at slightly different moments. What has to agree, and how it is ensured
while the server keeps receiving mail:

* **SQLite databases** (the directory, every mailbox index, the outbound
  queue) are copied with SQLite's online backup API: a snapshot of one
  committed state, whatever is being written meanwhile. Their -wal/-shm
  files are never copied (a copied WAL without its database is a torn
  database).
* **Order.** In each folder the databases come first, then the small
  control files, then the subfolders; so a mailbox's index is taken before
  its `dovecot-uidlist`, and that before its message files. Everything the
  index knows was written to the uidlist before (storage/index.py writes
  the UID first), and everything the uidlist knows was written as a file
  before; messages that arrive during the backup are files the index does
  not know yet, which is exactly the state after a crash that the store
  already repairs (the next look at the folder indexes them).
* **The outbound queue** writes a message file before its rows and removes
  the rows before the file. Taking the database first and the files after
  leaves only rows of messages that were finished while the backup ran;
  those rows are deleted from the *copy* before it is written, so the
  restored queue never has a row without its message.
* **Skipped:** Maildir `tmp/` (deliveries not yet acknowledged), `*.tmp`
  files (writes in progress, renamed when complete), the queue's worker
  lock files, SQLite's -wal/-shm/-journal files.

A message renamed (a flag changed, moved from new/ to cur/) between listing
a folder and reading the file is looked up again by its unique base name;
one expunged meanwhile is left out.

The archive is a tar (gzip when asked) with `backup-manifest.json` as its
last member: format version, time, counts, and the SHA-256 of every file.
`restore` checks every file against it, runs SQLite's integrity check on
every database, and refuses to write into anything but empty folders; until
it has finished, a marker file keeps `mailserver serve` from starting on a
half-restored folder.

Everything here is synchronous (it runs in a worker thread or the CLI).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from policy.errors import MailserverError
from storage.db import migration_scripts
from storage.maildir import fsync_dir

FORMAT = "phuyen-mailserver-backup"
VERSION = 1
MANIFEST = "backup-manifest.json"
# In the data folder while a restore is under way; `serve` refuses to start while it exists.
RESTORE_MARKER = ".restore-incomplete"
DB_SUFFIX = ".sqlite3"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
INDEX_NAME = "mailserver.index.sqlite3"  # storage.index.INDEX_NAME, without importing the index machinery
QUEUE_DB = "queue.sqlite3"
CHUNK = 1 << 20


class BackupError(MailserverError):
    """A backup or restore that cannot be made or trusted; the field names what to fix."""


@dataclass(frozen=True)
class Root:
    """A folder the backup covers, stored in the archive under `name/`."""

    name: str  # data, logs, archive, dkim, templates
    path: Path


@dataclass
class Summary:
    files: int = 0
    bytes: int = 0
    databases: int = 0
    mailboxes: int = 0
    messages: int = 0
    queue_finished_dropped: int = 0
    skipped_vanished: int = 0
    seconds: float = 0.0
    # schema version (PRAGMA user_version) per kind of database, the highest seen
    schemas: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "sha256"}


# ---------------------------------------------------------------------------- backup


class _Writer:
    """Adds members to the tar and records their SHA-256 for the manifest."""

    def __init__(self, tar: tarfile.TarFile, summary: Summary) -> None:
        self.tar = tar
        self.summary = summary

    def add_dir(self, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        self.tar.addfile(info)

    def add_file(self, name: str, f: IO[bytes], st: os.stat_result) -> None:
        """`f` is read for exactly st_size bytes: a log file that grows meanwhile is cut at that size."""
        info = tarfile.TarInfo(name)
        info.size = st.st_size
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = st.st_mtime  # Maildir: the file's mtime is the message's INTERNALDATE
        hashing = _HashingReader(f, st.st_size)
        self.tar.addfile(info, hashing)
        if hashing.read_bytes != st.st_size:
            raise BackupError(name, f"the file shrank while it was read ({hashing.read_bytes} of {st.st_size} bytes)")
        self.summary.sha256[name] = hashing.hexdigest()
        self.summary.files += 1
        self.summary.bytes += st.st_size


class _HashingReader(io.RawIOBase):
    def __init__(self, f: IO[bytes], limit: int) -> None:
        self.f = f
        self.left = limit
        self.read_bytes = 0
        self.h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        self.read_bytes += len(data)
        self.h.update(data)
        return data

    def hexdigest(self) -> str:
        return self.h.hexdigest()


# Kinds of database by file name, as their migrations are named (storage/migrations/<kind>_NNNN_*.sql).
SCHEMA_KINDS = {"directory.sqlite3": "directory", INDEX_NAME: "index", QUEUE_DB: "queue"}


def schema_version(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def snapshot_database(src: Path, dst: Path) -> None:
    """One committed state of `src`, through SQLite's online backup API (readers and writers continue).

    Opened read-only, so that it never changes the database itself."""
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
            # The copy is a plain rollback-journal database file: restorable anywhere, no -wal needed.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()


def drop_finished_queue_rows(db: Path, messages_captured: set[str]) -> int:
    """In the snapshot of the queue: delete the rows of messages whose file was not captured, because
    the queue finished them (rows first, file after) while the backup ran. Returns how many."""
    con = sqlite3.connect(db)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "messages" not in tables:
            return 0
        ids = [r[0] for r in con.execute("SELECT id FROM messages")]
        gone = [i for i in ids if i not in messages_captured]
        with con:
            for i in gone:
                for table in sorted(tables - {"messages"}):
                    cols = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
                    if "queue_id" in cols:
                        con.execute(f'DELETE FROM "{table}" WHERE queue_id = ?', (i,))
                con.execute("DELETE FROM messages WHERE id = ?", (i,))
        return len(gone)
    finally:
        con.close()


_QUEUE_FILE = re.compile(r"^(?P<id>[A-Za-z0-9]+)\.eml$")


def _skipped(path: Path, is_dir: bool) -> bool:
    name = path.name
    if is_dir:
        if name == "tmp" and (path.parent / "cur").is_dir() and (path.parent / "new").is_dir():
            return True  # a Maildir's tmp/: nothing there was acknowledged
        return name == "workers" and (path.parent / QUEUE_DB).exists()  # flock()ed liveness files
    return (name.endswith(".tmp") or name == RESTORE_MARKER
            or any(name.endswith(DB_SUFFIX + side) for side in SQLITE_SIDE_FILES))


def _is_maildir_leaf(path: Path) -> bool:
    return path.name in ("new", "cur") and (path.parent / "cur").is_dir() and (path.parent / "new").is_dir()


def _base(name: str) -> str:
    return name.split(":", 1)[0]


def _open_message(path: Path) -> tuple[IO[bytes], os.stat_result, str] | None:
    """Open a message file; if it was renamed meanwhile (flags, new/ → cur/) find it by its base name."""
    try:
        f = path.open("rb")
        return f, os.fstat(f.fileno()), path.name
    except FileNotFoundError:
        pass
    base = _base(path.name)
    folder = path.parent.parent
    for sub in ("cur", "new"):
        try:
            names = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for n in names:
            if _base(n) == base:
                try:
                    f = (folder / sub / n).open("rb")
                except FileNotFoundError:
                    continue
                return f, os.fstat(f.fileno()), n
    return None  # expunged while the backup ran


def backup(roots: list[Root], out: IO[bytes], *, gzip: bool = False, extra: dict[str, Path] | None = None,
           info: dict[str, Any] | None = None) -> Summary:
    """Write a backup of `roots` (the data folder first) to `out`; `extra` files (the configuration) are
    added for reference under `config/`; `info` goes into the manifest."""
    started = time.monotonic()
    summary = Summary()
    scratch = Path(tempfile.mkdtemp(prefix="mailserver-backup-"))
    try:
        with tarfile.open(fileobj=out, mode="w|gz" if gzip else "w|", format=tarfile.PAX_FORMAT) as tar:
            w = _Writer(tar, summary)
            for root in roots:
                if not root.path.is_dir():
                    continue
                _walk(w, root.path, PurePosixPath(root.name), scratch, summary)
            for name, path in (extra or {}).items():
                if path.is_file():
                    with path.open("rb") as f:
                        w.add_file(f"config/{name}", f, os.fstat(f.fileno()))
            summary.seconds = time.monotonic() - started
            manifest = {
                "format": FORMAT, "version": VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "roots": {r.name: str(r.path) for r in roots}, **(info or {}), **summary.counts(),
                "sha256": summary.sha256,
            }
            data = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
            minfo = tarfile.TarInfo(MANIFEST)
            minfo.size, minfo.mode, minfo.mtime = len(data), 0o600, int(time.time())
            tar.addfile(minfo, io.BytesIO(data))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary


def _walk(w: _Writer, folder: Path, name: PurePosixPath, scratch: Path, summary: Summary,
          captured: set[str] | None = None) -> None:
    """One folder: databases (snapshots), then files, then subfolders (see the module docstring).

    In a Maildir, new/ is read before cur/ (messages only ever move from new/ to cur/, so none can slip
    between the two listings), and `captured` (the base names taken from this Maildir) keeps a message
    that moved meanwhile from being stored twice."""
    try:
        st = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: (e.name != "new", e.name))
    except FileNotFoundError:
        return  # removed meanwhile (an archived mailbox)
    w.add_dir(str(name), st)
    dbs = [e for e in entries if e.is_file(follow_symlinks=False) and e.name.endswith(DB_SUFFIX)]
    files = [e for e in entries if e.is_file(follow_symlinks=False) and not e.name.endswith(DB_SUFFIX)
             and not _skipped(Path(e.path), False)]
    dirs = [e for e in entries if e.is_dir(follow_symlinks=False) and not _skipped(Path(e.path), True)]
    queue_snapshot: Path | None = None
    leaf = _is_maildir_leaf(folder)
    bases: set[str] = set()  # of this folder's Maildir, shared by its new/ and cur/
    for e in dbs:
        snap = scratch / f"{summary.databases}-{e.name}"
        snapshot_database(Path(e.path), snap)
        summary.databases += 1
        kind = SCHEMA_KINDS.get(e.name)
        if kind is not None:
            summary.schemas[kind] = max(summary.schemas.get(kind, 0), schema_version(snap))
        if e.name == INDEX_NAME:
            summary.mailboxes += 1
        if e.name == QUEUE_DB:
            queue_snapshot = snap  # written after the message files, pruned (module docstring)
            continue
        _add_snapshot(w, str(name / e.name), snap, Path(e.path))
    for e in files:
        path = Path(e.path)
        if leaf and captured is not None and _base(e.name) in captured:
            continue  # moved from new/ and already stored under its cur/ name
        opened = _open_message(path) if leaf else _open_plain(path)
        if opened is None:
            summary.skipped_vanished += 1
            continue
        f, fst, actual = opened
        with f:
            if not stat.S_ISREG(fst.st_mode):
                continue
            # a renamed message is stored in the folder it is in now (new/ or cur/)
            target = name / actual if actual == e.name else _moved(name, path, actual)
            w.add_file(str(target), f, fst)
        if leaf:
            summary.messages += 1
            if captured is not None:
                captured.add(_base(actual))
    for e in dirs:
        _walk(w, Path(e.path), name / e.name, scratch, summary, bases)
    if queue_snapshot is not None:
        captured = {m.group("id") for n in summary.sha256
                    if n.startswith(str(name / "messages") + "/")
                    and (m := _QUEUE_FILE.match(PurePosixPath(n).name))}
        summary.queue_finished_dropped += drop_finished_queue_rows(queue_snapshot, captured)
        _add_snapshot(w, str(name / QUEUE_DB), queue_snapshot, folder / QUEUE_DB)


def _moved(name: PurePosixPath, path: Path, actual: str) -> PurePosixPath:
    folder = path.parent.parent
    sub = "cur" if (folder / "cur" / actual).exists() else "new"
    return name.parent / sub / actual


def _open_plain(path: Path) -> tuple[IO[bytes], os.stat_result, str] | None:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    return f, os.fstat(f.fileno()), path.name


def _add_snapshot(w: _Writer, name: str, snap: Path, original: Path) -> None:
    ost = os.stat(original)
    with snap.open("rb") as f:
        st = os.fstat(f.fileno())
        # the live file's mode (0600/0640), the snapshot's size
        w.add_file(name, f, os.stat_result((ost.st_mode, *st[1:])))
    snap.unlink()


# ---------------------------------------------------------------------------- restore


@dataclass
class Restored:
    manifest: dict[str, Any]
    files: int
    bytes: int
    databases: list[Path]
    config_members: list[str]
    seconds: float


_SAFE = re.compile(r"^[^/\x00]+(/[^/\x00]+)*$")


def _target(name: str, targets: dict[str, Path]) -> tuple[str, Path] | None:
    """Where a member goes; refuses names that would leave the target folder."""
    if not _SAFE.match(name) or any(part in ("", ".", "..") for part in name.split("/")):
        raise BackupError("backup", f"unsafe file name in the backup: {name!r}")
    root, _, rest = name.partition("/")
    if root not in targets:
        return None
    return root, targets[root] / rest if rest else targets[root]


def refuse_half_restored(data: Path) -> None:
    """`serve` and `init` stop here while a restore into `data` is unfinished (or failed)."""
    if (data / RESTORE_MARKER).exists():
        raise BackupError("paths.data", f"{data} holds an unfinished restore ({data / RESTORE_MARKER}); run "
                          "the restore again into an empty folder (nothing here is served)")


def check_empty(targets: dict[str, Path]) -> None:
    for role, path in targets.items():
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BackupError(f"paths.{role}", f"{path} is not empty: restore writes only into an empty or new "
                              "folder (move the old one aside first; nothing was changed)")


def check_schemas(manifest: dict[str, Any]) -> None:
    """Refuse data whose databases a newer version has migrated: this version would misread them, and
    migrations only go forward (docs/operations.md, upgrades)."""
    for kind, version in (manifest.get("schemas") or {}).items():
        known = max((n for n, _ in migration_scripts(kind)), default=0)
        if version > known:
            raise BackupError("backup", f"its {kind} databases have schema {version}, this version knows up to "
                              f"{known}: restore it with version {manifest.get('server_version', '?')} or later")


def restore(source: IO[bytes], targets: dict[str, Path], *, owner: tuple[int, int] | None = None) -> Restored:
    """Unpack a backup into empty folders, checking every file against the manifest.

    `targets` maps the archive's roots (data, logs, ...) to folders. Members under `config/` are not
    written (the configuration is the operator's; they are listed). `owner` (uid, gid): chown what is
    written, for a restore run as root for a service that runs as another user."""
    started = time.monotonic()
    check_empty(targets)
    data = targets["data"]
    data.mkdir(parents=True, exist_ok=True)
    marker = data / RESTORE_MARKER
    marker.write_text("a restore was started here and has not finished; do not serve from this folder\n")
    written: dict[str, str] = {}
    manifest: dict[str, Any] | None = None
    config_members: list[str] = []
    databases: list[Path] = []
    nbytes = 0
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    raw = tar.extractfile(member)
                    assert raw is not None
                    manifest = json.loads(raw.read())
                    continue
                if member.name.startswith("config/"):
                    config_members.append(member.name)
                    continue
                where = _target(member.name, targets)
                if where is None:
                    raise BackupError("backup", f"{member.name}: not part of any folder of this backup format")
                _, path = where
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True, mode=0o700)
                    os.chmod(path, stat.S_IMODE(member.mode) | 0o700)
                    _chown(path, owner)
                    continue
                if not member.isfile():
                    raise BackupError("backup", f"{member.name}: only files and folders are restored")
                raw = tar.extractfile(member)
                assert raw is not None
                path.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    while chunk := raw.read(CHUNK):
                        h.update(chunk)
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(path, stat.S_IMODE(member.mode))
                os.utime(path, (member.mtime, member.mtime))
                _chown(path, owner)
                written[member.name] = h.hexdigest()
                nbytes += member.size
                if path.name.endswith(DB_SUFFIX):
                    databases.append(path)
        if manifest is None or manifest.get("format") != FORMAT:
            raise BackupError("backup", "no backup manifest at the end: the file is not a complete backup "
                              "of this server (cut short?)")
        if manifest.get("version", 0) > VERSION:
            raise BackupError("backup", f"made by a newer version (format {manifest['version']}); "
                              "restore it with that version or later")
        _verify(manifest, written, config_members)
        check_schemas(manifest)
        for db in databases:
            _integrity(db)
        for path in _dirs_under(targets.values()):
            fsync_dir(path)
        marker.unlink()
        fsync_dir(data)
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise BackupError("backup", f"cannot read the backup: {e}; the folders written so far are "
                          f"incomplete ({marker} marks them)") from e
    return Restored(manifest, len(written), nbytes, databases, config_members, time.monotonic() - started)


def _verify(manifest: dict[str, Any], written: dict[str, str], config_members: list[str]) -> None:
    expected: dict[str, str] = {k: v for k, v in manifest.get("sha256", {}).items() if not k.startswith("config/")}
    missing = sorted(set(expected) - set(written))
    extra = sorted(set(written) - set(expected))
    wrong = sorted(n for n in set(expected) & set(written) if expected[n] != written[n])
    if missing or extra or wrong:
        detail = "; ".join(f"{what}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                           for what, names in (("missing", missing), ("not in the manifest", extra),
                                               ("damaged", wrong)) if names)
        raise BackupError("backup", f"the files do not match the manifest ({detail})")


def _integrity(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        result = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if result != "ok":
        raise BackupError("backup", f"{db} fails SQLite's integrity check: {result}")


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner)


def _dirs_under(roots: Any) -> Iterator[Path]:
    for root in roots:
        for dirpath, _dirnames, _files in os.walk(root):
            yield Path(dirpath)
