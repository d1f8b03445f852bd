"""`mailserver migrate imap|mbox|maildir|eml`: bring a unit's existing mail over (Đ8.2.d).

Every form is resumable and idempotent: run it again and it copies only
what is new (see mailserver/migrate/state.py). The exit status is 0 when
every mailbox finished without a failed message, 1 otherwise, so a script
can loop until it is clean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mailserver.cli.common import Context, open_csv
from policy.errors import ValidationFailed

CSV_HELP = ("CSV columns (header row required): user (on the old server), password or password_file, to (the "
            "address here); optional host, port, tls, which override the command line for that row. With "
            "--master-user no password column is needed.")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="bring existing mail over from an old server or files (Đ8.2.d)")
    msub = p.add_subparsers(dest="migrate_command", metavar="SOURCE", required=True)

    def common(c: argparse.ArgumentParser) -> None:
        c.add_argument("--report", type=Path, metavar="FILE", help="also write the final report as JSON to FILE")

    im = msub.add_parser(
        "imap", parents=parents, help="copy mailboxes from an IMAP server (Zimbra, Exchange, Dovecot ...)",
        description="Copy every folder and message (bytes, flags, internal date) from an old IMAP server. Folders "
        "keep their names; Sent, Drafts, Trash, Junk and Archive become ours (by SPECIAL-USE or common names). "
        "Run it again to copy what is new; an interrupted run continues. " + CSV_HELP)
    im.add_argument("--host", help="the old server")
    im.add_argument("--port", type=int, help="default 993 (implicit TLS) or 143")
    im.add_argument("--tls", choices=["implicit", "starttls", "none"], default="implicit")
    im.add_argument("--user", help="the mailbox on the old server")
    im.add_argument("--password-file", type=Path, metavar="FILE", help="its password (first line; - for stdin)")
    im.add_argument("--to", help="the address here (the account must exist)")
    im.add_argument("--csv", type=Path, metavar="FILE", help="many mailboxes, one per row")
    im.add_argument("--parallel", type=int, default=4, help="mailboxes copied at once with --csv (default 4)")
    im.add_argument("--master-user", help="log in as this administrator on behalf of each user "
                    "(AUTHENTICATE PLAIN with an authorization identity: Dovecot master users, Zimbra admins)")
    im.add_argument("--master-password-file", type=Path, metavar="FILE")
    im.add_argument("--ca-file", type=Path, help="certificates to trust for the old server (PEM)")
    im.add_argument("--insecure", action="store_true",
                    help="do not verify the old server's certificate (a self-signed one on a trusted network)")
    im.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the old server (default 300)")
    common(im)
    im.set_defaults(handler=imap)

    mb = msub.add_parser("mbox", parents=parents, help="import an mbox file into one folder",
                         description="Import an mbox file (Thunderbird, Outlook export, Unix mail spool). Flags "
                         "are read from Status/X-Status/X-Mozilla-Status; the date from the 'From ' line.")
    mb.add_argument("file", type=Path)
    mb.add_argument("--to", required=True)
    mb.add_argument("--folder", default="INBOX", help='target folder, e.g. "Lưu trữ/2019" (default INBOX)')
    common(mb)
    mb.set_defaults(handler=mbox)

    md = msub.add_parser("maildir", parents=parents, help="import a Maildir or Maildir++ tree (Dovecot, Courier)",
                         description="Import a Maildir tree as Dovecot or Courier wrote it: Maildir++ folders "
                         "(.Sent, .Dự án.2026 in modified UTF-7) or Dovecot's LAYOUT=fs sub-folders; flags and "
                         "Dovecot keywords from the file names, the date from the file's time.")
    md.add_argument("dir", type=Path)
    md.add_argument("--to", required=True)
    common(md)
    md.set_defaults(handler=maildir)

    em = msub.add_parser("eml", parents=parents, help="import a folder of .eml files",
                         description="Import the .eml files of a folder (sub-folders become sub-folders); the "
                         "date from each message's Date: header.")
    em.add_argument("dir", type=Path)
    em.add_argument("--to", required=True)
    em.add_argument("--folder", default="INBOX")
    em.add_argument("--seen", action="store_true", help="mark the imported messages as read")
    common(em)
    em.set_defaults(handler=eml)


# ------------------------------------------------------------------ helpers


def read_secret(path: Path, field: str) -> str:
    """The first line of a file (or stdin for -); a password never goes on the command line (ps, history)."""
    if str(path) == "-":
        return sys.stdin.readline().rstrip("\r\n")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailed(field, f"{path}: no such file") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise ValidationFailed(field, f"{path}: cannot read it ({e})") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise ValidationFailed(field, f"{path} is empty")
    return line


async def _run(ctx: Context, args: argparse.Namespace, jobs: list, parallel: int = 1) -> int:
    from mailserver.migrate.progress import ProgressDisplay
    from mailserver.migrate.report import AccountReport, human_report
    from mailserver.migrate.runner import run_jobs

    app = await ctx.app()
    reports = [AccountReport(j.describe, j.target) for j in jobs]
    display = ProgressDisplay(reports, sys.stderr if ctx.json else sys.stdout)
    await run_jobs(app, jobs, parallel=parallel, display=display, reports=reports)
    data = [r.as_dict() for r in reports]
    if args.report:
        args.report.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    if ctx.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(human_report(reports))
    return 0 if all(r.ok for r in reports) else 1


# ------------------------------------------------------------------ imap


def _endpoint(args: argparse.Namespace, host: str | None, port: str | int | None, tls: str | None) -> object:
    from mailserver.migrate.imapclient import ImapEndpoint

    if not host:
        raise ValidationFailed("host", "give --host (or a host column in the CSV)")
    tls = tls or args.tls
    if tls not in ("implicit", "starttls", "none"):
        raise ValidationFailed("tls", f'"{tls}" is not implicit, starttls or none')
    try:
        number = int(port) if port not in (None, "") else None
    except ValueError:
        raise ValidationFailed("port", f'"{port}" is not a port number') from None
    return ImapEndpoint(host, number, tls, verify=not args.insecure,
                        ca_file=str(args.ca_file) if args.ca_file else None, timeout=args.timeout)


def _imap_job(args: argparse.Namespace, endpoint: object, user: str, password: str | None, to: str,
              master: tuple[str, str] | None) -> object:
    from mailserver.migrate.runner import Job
    from mailserver.migrate.sources import ImapMailbox

    def make() -> ImapMailbox:
        if master is not None:
            return ImapMailbox(endpoint, user, master[1], master_user=master[0])  # type: ignore[arg-type]
        return ImapMailbox(endpoint, user, password or "")  # type: ignore[arg-type]

    return Job(f"{user}@{endpoint.host}", to, make)  # type: ignore[attr-defined]


async def imap(ctx: Context, args: argparse.Namespace) -> int:
    master = None
    if args.master_user:
        if not args.master_password_file:
            raise ValidationFailed("master_password_file", "--master-user needs --master-password-file")
        master = (args.master_user, read_secret(args.master_password_file, "master_password_file"))
    if args.csv:
        if args.user or args.to or args.password_file:
            raise ValidationFailed("csv", "--csv takes users, passwords and addresses from the file; "
                                   "leave out --user, --password-file and --to")
        if args.parallel < 1:
            raise ValidationFailed("parallel", "must be at least 1")
        jobs = [_imap_job(args, _endpoint(args, row.get("host") or args.host, row.get("port") or args.port,
                                          row.get("tls") or None),
                          row["user"], row.get("password"), row["to"], master)
                for row in _csv_rows(args.csv, master is not None)]
        return await _run(ctx, args, jobs, args.parallel)
    for name in ("user", "to"):
        if not getattr(args, name):
            raise ValidationFailed(name, f"give --{name} (or --csv FILE for many mailboxes)")
    if master is None and not args.password_file:
        raise ValidationFailed("password_file", "give --password-file (or --master-user)")
    password = None if master else read_secret(args.password_file, "password_file")
    job = _imap_job(args, _endpoint(args, args.host, args.port, None), args.user, password, args.to, master)
    return await _run(ctx, args, [job])


CSV_COLUMNS = {"user", "password", "password_file", "to", "host", "port", "tls"}
CSV_ALIASES = {"source_user": "user", "username": "user", "address": "to", "target": "to", "email": "to"}


def _csv_rows(path: Path, master: bool) -> list[dict[str, str]]:
    reader = open_csv(path, "csv")
    headers = [CSV_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in reader.fieldnames or []]
    unknown = set(headers) - CSV_COLUMNS
    if unknown:
        raise ValidationFailed("csv", f"{path}: unknown columns {', '.join(sorted(unknown))} ({CSV_HELP})")
    for needed in ("user", "to"):
        if needed not in headers:
            raise ValidationFailed("csv", f"{path}: the header row needs a '{needed}' column ({CSV_HELP})")
    rows = []
    for n, raw in enumerate(reader, 2):
        row = {CSV_ALIASES.get(k.strip().lower(), k.strip().lower()): (v or "").strip()
               for k, v in raw.items() if k}
        if not row.get("user") and not row.get("to"):
            continue  # a blank line in the sheet
        for needed in ("user", "to"):
            if not row.get(needed):
                raise ValidationFailed("csv", f"{path} line {n}: {needed} is empty")
        if not master:
            if row.get("password_file"):
                pf = Path(row["password_file"])
                row["password"] = read_secret(pf if pf.is_absolute() else path.parent / pf, "password_file")
            elif not row.get("password"):
                raise ValidationFailed("csv", f"{path} line {n}: give password or password_file "
                                       "(or run with --master-user)")
        rows.append(row)
    if not rows:
        raise ValidationFailed("csv", f"{path}: no rows")
    return rows


# ------------------------------------------------------------------ files


async def mbox(ctx: Context, args: argparse.Namespace) -> int:
    from mailserver.migrate.runner import Job
    from mailserver.migrate.sources import MboxFile

    source = MboxFile(args.file, args.folder)
    return await _run(ctx, args, [Job(str(args.file), args.to, lambda: source)])


async def maildir(ctx: Context, args: argparse.Namespace) -> int:
    from mailserver.migrate.runner import Job
    from mailserver.migrate.sources import MaildirTree

    source = MaildirTree(args.dir)
    return await _run(ctx, args, [Job(str(args.dir), args.to, lambda: source)])


async def eml(ctx: Context, args: argparse.Namespace) -> int:
    from mailserver.migrate.runner import Job
    from mailserver.migrate.sources import EmlFolder

    source = EmlFolder(args.dir, args.folder, seen=args.seen)
    return await _run(ctx, args, [Job(str(args.dir), args.to, lambda: source)])
