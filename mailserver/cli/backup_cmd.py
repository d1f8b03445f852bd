"""`mailserver backup` and `mailserver restore`: the data folder as one consistent, verifiable file.

The mechanics (database snapshots, order, the queue, the manifest) are in
`storage/backup.py`. Here: which folders a configuration stores data in,
who may run it, and what a restored folder needs before it serves again
(schema migrations when the backup is older than this version, optionally
a new UIDVALIDITY or a full reindex). docs/operations.md has the procedure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import secrets
import sys
from importlib import metadata
from pathlib import Path
from typing import IO

from mailserver.cli.common import Context, out, pairs
from policy.errors import ValidationFailed
from policy.settings import Settings
from policy.units import format_size
from storage import controlfiles
from storage.backup import INDEX_NAME, BackupError, Restored, Root, Summary, backup, check_empty, restore


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backup", parents=parents, help="write a consistent backup of the data folder (safe while serving)",
        description="Write the data folder (directory database, mailboxes with their indexes, the outbound "
        "queue, logs, DKIM keys, archives) to one tar file, consistently, while the server keeps running. "
        "Databases are copied with SQLite's online backup; see docs/operations.md. Run it as the user the "
        "server runs as. FILE '-' writes to standard output (e.g. through ssh or `podman exec`).",
    )
    b.add_argument("file", metavar="FILE", help="the backup to write (.tar, or .tar.gz/.tgz compressed), or -")
    b.add_argument("--gzip", action="store_true", help="compress (implied by a .gz/.tgz name)")
    b.set_defaults(handler=run_backup)

    r = sub.add_parser(
        "restore", parents=parents, help="restore a backup into an empty data folder",
        description="Unpack a backup made by `mailserver backup` into the folders mailserver.yaml names, which "
        "must be empty or absent. Every file is checked against the backup's manifest and every database "
        "with SQLite's integrity check; schema migrations run if the backup is from an older version. The "
        "backup's mailserver.yaml and policy.yaml are inside it under config/ but are not written.",
    )
    r.add_argument("file", metavar="FILE", help="a backup file, or - for standard input")
    r.add_argument("--new-uidvalidity", action="store_true",
                   help="give every folder a new UIDVALIDITY, so mail clients that saw newer mail than the "
                   "backup re-read their folders instead of trusting their caches (docs/operations.md)")
    r.add_argument("--reindex", action="store_true", help="rebuild every mailbox index from the files now "
                   "(otherwise each index catches up with its files when the mailbox is first used)")
    r.add_argument("--owner", metavar="USER", help="when run as root: give the restored files to USER "
                   "(default: the owner of the existing empty data folder)")
    r.set_defaults(handler=run_restore)


def roots(settings: Settings) -> list[Root]:
    """The folders that hold server data: the data folder, and any configured outside it."""
    data = settings.paths.data
    found = [Root("data", data)]
    for name, path in (("logs", settings.paths.log_dir), ("archive", settings.paths.archive_dir),
                       ("dkim", settings.dkim_keys), ("templates", settings.paths.templates)):
        if path is not None and not path.resolve().is_relative_to(data.resolve()):
            found.append(Root(name, path))
    return found


def _refuse_foreign_owner(data: Path) -> None:
    """SQLite creates -wal/-shm files beside a database it opens; made by another user (root), they would
    keep the server from opening its own databases. So only the data folder's owner may run a backup."""
    owner = data.stat().st_uid
    if os.geteuid() != owner:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise ValidationFailed("user", f"{data} belongs to {name}; run the backup as that user "
                               f"(sudo -u {name} mailserver backup ...)")


async def run_backup(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings
    data = settings.paths.data
    if not settings.paths.directory_db.exists():
        raise ValidationFailed("paths.data", f"{data} holds no server data (no directory database)")
    _refuse_foreign_owner(data)
    folders = roots(settings)
    gzip = args.gzip or args.file.endswith((".gz", ".tgz"))
    to_stdout = args.file == "-"
    target = None if to_stdout else Path(args.file).resolve()
    if target is not None:
        for root in folders:
            if target.is_relative_to(root.path.resolve()):
                raise ValidationFailed("file", f"{target} is inside {root.path}, which is being backed up")
        if target.exists():
            raise ValidationFailed("file", f"{target} exists; backups are never overwritten")
    extra = {name: f for name, f in (("mailserver.yaml", ctx.loaded.config_file),
                                     ("policy.yaml", ctx.loaded.policy_file)) if f is not None}
    info = {"hostname": settings.hostname, "domains": settings.domains, "server_version": _version()}

    def write(stream: IO[bytes]) -> Summary:
        return backup(folders, stream, gzip=gzip, extra=extra, info=info)

    if to_stdout:
        summary = await asyncio.to_thread(write, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        assert target is not None
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("xb") as f:
                summary = await asyncio.to_thread(write, f)
                f.flush()
                os.fsync(f.fileno())
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    s = summary.counts()
    lines = [
        ("backup", "(standard output)" if to_stdout else str(target)),
        ("folders", ", ".join(f"{r.name}={r.path}" for r in folders)),
        ("files", f"{s['files']} ({format_size(s['bytes'])}), {s['databases']} databases"),
        ("mail", f"{s['messages']} messages in {s['mailboxes']} indexed mailboxes"),
        ("seconds", f"{s['seconds']:.1f}"),
    ]
    if s["queue_finished_dropped"]:
        lines.append(("queue", f"{s['queue_finished_dropped']} messages finished during the backup left out"))
    data_out = {"file": None if to_stdout else str(target), **s}
    if to_stdout:  # the archive is on stdout: the summary goes to stderr
        print(pairs(lines), file=sys.stderr)
    else:
        out(ctx, data_out, pairs(lines))
    return 0


def _version() -> str:
    try:
        return metadata.version("phuyen-mailserver")
    except metadata.PackageNotFoundError:
        return "unknown"


def _owner(name: str | None, data: Path) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None  # files are ours already
    if name:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise ValidationFailed("owner", f"no user {name!r} on this machine") from None
        return pw.pw_uid, pw.pw_gid
    if data.is_dir():
        st = data.stat()
        return st.st_uid, st.st_gid
    return None


def new_uidvalidity(mail_dir: Path) -> int:
    """Every folder gets a new UIDVALIDITY (RFC 3501 §2.3.1.1): UIDs the clients cached from after the
    backup can then never be taken for the restored messages. The indexes are removed (they are caches
    of the old value) and rebuilt from the files at first use. Returns the number of folders."""
    count = 0
    base = secrets.randbelow(1 << 30) + (1 << 30)
    for uidlist in sorted(mail_dir.rglob(controlfiles.UIDLIST)):
        folder = uidlist.parent
        current = controlfiles.read_uidlist(folder)
        if current is None:
            continue
        records = sorted((uid, name) for name, uid in current.records.items())
        controlfiles.write_uidlist(folder, base + count, current.next_free, records)
        count += 1
    for index in mail_dir.rglob(INDEX_NAME):
        for side in ("", "-wal", "-shm"):
            Path(str(index) + side).unlink(missing_ok=True)
    return count


async def run_restore(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings
    targets = {r.name: r.path for r in roots(settings)}
    check_empty(targets)  # before reading anything: a non-empty target is the commonest mistake
    owner = _owner(args.owner, settings.paths.data)

    def unpack() -> Restored:
        if args.file == "-":
            return restore(sys.stdin.buffer, targets, owner=owner)
        try:
            with open(args.file, "rb") as f:
                return restore(f, targets, owner=owner)
        except FileNotFoundError:
            raise BackupError("file", f"{args.file} does not exist") from None

    result = await asyncio.to_thread(unpack)
    manifest = result.manifest
    folders = new_uidvalidity(settings.paths.mail_dir) if args.new_uidvalidity else 0
    app = await ctx.app()  # opening the directory applies schema migrations of this version
    accounts = await app.directory.list_accounts()
    reindexed = 0
    if args.reindex:
        for acc in accounts:
            if app.store.has_mailbox(acc):
                await app.store.reindex(acc)
                reindexed += 1
    if owner is not None:
        _chown_tree(targets, owner)  # migrations and reindexing may have written files as root
    lines = [
        ("restored", f"{result.files} files ({format_size(result.bytes)}) in {result.seconds:.1f} s, "
                     "every file matches the manifest"),
        ("backup of", f"{manifest.get('hostname', '?')} made {manifest.get('created', '?')} "
                      f"by version {manifest.get('server_version', '?')}"),
        ("folders", ", ".join(f"{k}={v}" for k, v in targets.items())),
        ("directory", f"{len(accounts)} accounts"),
        ("mail", f"{manifest.get('messages', 0)} messages in {manifest.get('mailboxes', 0)} indexed mailboxes"),
        ("schemas", ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("schemas", {}).items()))
         + " (newer migrations of this version were applied)"),
    ]
    if folders:
        lines.append(("uidvalidity", f"new in {folders} folders; clients will re-read them"))
    if reindexed:
        lines.append(("reindexed", f"{reindexed} mailboxes"))
    if result.config_members:
        names = ", ".join(m.removeprefix("config/") for m in result.config_members)
        lines.append(("configuration", f"the backup's {names} are in the file under config/ "
                                       "(not written: compare with yours)"))
    lines.append(("next", "mailserver serve (or start the container / systemctl start mailserver)"))
    out(ctx, {"files": result.files, "bytes": result.bytes,
              "manifest": {k: v for k, v in manifest.items() if k != "sha256"}, "accounts": len(accounts),
              "new_uidvalidity_folders": folders, "reindexed": reindexed}, pairs(lines))
    return 0


def _chown_tree(targets: dict[str, Path], owner: tuple[int, int]) -> None:
    for root in targets.values():
        for dirpath, dirnames, filenames in os.walk(root):
            for n in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, n), *owner)
            os.chown(dirpath, *owner)
