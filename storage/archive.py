"""Đ5.3.b: a revoked mailbox is archived, not deleted.

The archive is a gzip-compressed tar of the account's Maildir++ tree as it
is on disk (Dovecot and Courier read that layout, so a restored archive is
a usable mailbox), plus a manifest (JSON) inside the tar and beside it:
the account, the dates, the number of messages, sizes, and the SHA-256 of
every file. The index database is left out: it is a cache rebuilt from the
files (`mailserver reindex`).

Order of work, so nothing is lost at any instant: write the tar to a
temporary name and fsync it; read it back and check every member against
the manifest; only then rename it into place, write the manifest, fsync
the folder, and report success. The caller removes the live mailbox only
after that (`MailStore.remove_mailbox`). Everything here is synchronous
file work; the store runs it on its worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from storage import maildir as md

FORMAT = "phuyen-mailserver-archive/1"
MANIFEST_NAME = "manifest.json"
EXCLUDED_PREFIX = "mailserver.index.sqlite3"  # the index and its -wal/-shm: a cache, not mail
BLOCK = 1024 * 1024


class ArchiveError(Exception):
    """The archive could not be written or did not verify; the live mailbox is left untouched."""


@dataclass(frozen=True)
class ArchivedFile:
    path: str  # relative to the mailbox root, "/" separated
    size: int
    sha256: str
    message: bool  # a message file (in cur/ or new/ of a folder)


@dataclass
class Manifest:
    account: dict[str, Any]
    dates: dict[str, str | None]
    files: list[ArchivedFile] = field(default_factory=list)
    folders: dict[str, int] = field(default_factory=dict)  # Maildir++ directory name ("" = INBOX) -> messages

    @property
    def messages(self) -> int:
        return sum(1 for f in self.files if f.message)

    @property
    def message_bytes(self) -> int:
        return sum(f.size for f in self.files if f.message)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "account": self.account,
            "dates": self.dates,
            "messages": self.messages,
            "message_bytes": self.message_bytes,
            "total_bytes": self.total_bytes,
            "folders": self.folders,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "message": f.message} for f in self.files],
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        obj = json.loads(data)
        files = [ArchivedFile(f["path"], f["size"], f["sha256"], f["message"]) for f in obj["files"]]
        return cls(obj["account"], obj["dates"], files, obj.get("folders", {}))


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    manifest_path: Path
    manifest: Manifest
    archive_bytes: int
    sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Every regular file of the tree except the index and tmp/ (half-written deliveries)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if d != "tmp" and not d.startswith(md.TRASH_PREFIX))
        for name in sorted(filenames):
            if rel == Path(".") and name.startswith(EXCLUDED_PREFIX):
                continue
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p


def build_manifest(root: Path, account: dict[str, Any], dates: dict[str, str | None]) -> Manifest:
    manifest = Manifest(account=account, dates=dates)
    for p in _walk(root):
        rel = p.relative_to(root)
        is_message = len(rel.parts) >= 2 and rel.parts[-2] in ("cur", "new")
        if is_message:
            folder = rel.parts[0] if len(rel.parts) == 3 else ""
            manifest.folders[folder] = manifest.folders.get(folder, 0) + 1
        manifest.files.append(ArchivedFile(rel.as_posix(), p.stat().st_size, _sha256(p), is_message))
    return manifest


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(path: Path, manifest: Manifest | None = None) -> Manifest:
    """Read the whole archive back: every file the manifest lists is present with its size and SHA-256,
    and nothing else is. Raises ArchiveError; returns the manifest read from the archive."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            if member is None:
                raise ArchiveError(f"{path}: no {MANIFEST_NAME}")
            inside = Manifest.decode(member.read())
            expected = {f.path: f for f in (manifest or inside).files}
            seen: set[str] = set()
            for info in tar:
                if info.name == MANIFEST_NAME:
                    continue
                name = info.name.removeprefix("mailbox/")
                want = expected.get(name)
                if want is None or not info.isfile():
                    raise ArchiveError(f"{path}: unexpected member {info.name}")
                fh = tar.extractfile(info)
                assert fh is not None
                h, size = hashlib.sha256(), 0
                while chunk := fh.read(BLOCK):
                    h.update(chunk)
                    size += len(chunk)
                if size != want.size or h.hexdigest() != want.sha256:
                    raise ArchiveError(f"{path}: {name} differs from the manifest")
                seen.add(name)
            missing = set(expected) - seen
            if missing:
                raise ArchiveError(f"{path}: {len(missing)} files missing, e.g. {sorted(missing)[0]}")
    except (OSError, tarfile.TarError, EOFError, json.JSONDecodeError, KeyError) as e:
        raise ArchiveError(f"{path}: unreadable archive ({e})") from e
    return inside


def archive_mailbox(root: Path, dest: Path, account: dict[str, Any], dates: dict[str, str | None],
                    *, fsync: bool = True) -> ArchiveResult:
    """Write `dest` (…tar.gz) and `dest`.manifest.json from the Maildir at `root`, verified."""
    if not root.is_dir():
        raise ArchiveError(f"{root}: no mailbox to archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(root, account, dates)
    data = manifest.encode()
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mtime, info.mode = len(data), int(datetime.now().timestamp()), 0o600
            tar.addfile(info, io.BytesIO(data))
            for f in manifest.files:
                tar.add(root / f.path, arcname=f"mailbox/{f.path}", recursive=False)
        os.chmod(tmp, 0o600)  # a person's mail: readable by the server's user only
        if fsync:
            _fsync_file(tmp)
        verify(tmp, manifest)
        os.replace(tmp, dest)
        manifest_path = dest.with_name(dest.name.removesuffix(".tar.gz") + ".manifest.json")
        manifest_path.write_bytes(data)
        os.chmod(manifest_path, 0o600)
        if fsync:
            _fsync_file(manifest_path)
            md.fsync_dir(dest.parent)
    except ArchiveError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ArchiveError(f"could not write {dest}: {e.strerror or e}") from e
    return ArchiveResult(dest, manifest_path, manifest, dest.stat().st_size, _sha256(dest))


def archive_name(local_part: str, account_id: int, revoked_on: date) -> str:
    """`<local part>~<account id>-<revocation day>.tar.gz`: the id keeps a reused address's archives apart."""
    return f"{local_part}~{account_id}-{revoked_on:%Y%m%d}.tar.gz"
