"""`mailserver account …`: provisioning and the lifecycle of Đ4.2, Đ5.3, Đ6, Đ7.3, Đ13.3."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailserver.accountview import account_summary
from mailserver.cli.common import (
    Context,
    open_csv,
    out,
    pairs,
    parse_day,
    parse_quota,
    read_password,
    size,
    table,
)
from policy.calendar import local_date
from policy.errors import NotFound, ValidationFailed
from policy.retirement import Role
from storage.archives import ArchiveRecords
from storage.directory import PersonRequest, parse_birth
from storage.records import Account


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("account", help="mailboxes of people and units")
    asub = p.add_subparsers(dest="account_command", metavar="ACTION", required=True)

    def cmd(name: str, help_text: str, handler: Any, description: str | None = None) -> argparse.ArgumentParser:
        c = asub.add_parser(name, parents=parents, help=help_text, description=description or help_text)
        c.set_defaults(handler=handler)
        return c

    def password_options(c: argparse.ArgumentParser, what: str) -> None:
        g = c.add_mutually_exclusive_group()
        g.add_argument("--password", help=f"{what} (default: generate a temporary one, shown once)")
        g.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    a = cmd("add", "add a person's mailbox (address from the name, Đ4.2)",
            add, 'Address by Đ4.2: "Nguyễn Văn A" → nguyenvana@; if taken nguyenvana79@ (birth year), then '
            "nguyenvana379@ (birth month and year).")
    a.add_argument("--name", required=True, help='full name with diacritics, e.g. "Nguyễn Văn A"')
    a.add_argument("--birth", help="birth month, YYYY-MM (used when names collide, Đ4.2.b)")
    a.add_argument("--unit", help="the unit's address, e.g. stttt or pnv.tuyan")
    a.add_argument("--role", default="staff", choices=[r.value for r in Role],
                   help="leader: department/district level and above (Đ5.3.b)")
    a.add_argument("--address", help="choose the address explicitly")
    a.add_argument("--domain", help="domain (default: the unit's, else the primary)")
    a.add_argument("--quota", help="quota above the default, e.g. 5GiB")
    a.add_argument("--must-change", action="store_true", help="force a change at first login also with --password")
    password_options(a, "initial password")

    s = cmd("show", "everything about one account", show)
    s.add_argument("address")

    ls = cmd("list", "list accounts", list_accounts)
    ls.add_argument("--unit", help="only this unit")
    ls.add_argument("--recursive", action="store_true", help="with --unit: include sub-units")
    ls.add_argument("--state", choices=["active", "send-locked", "suspended", "revoked"])

    u = cmd("update", "change name, unit, role or birth month; the Đ5.3.b schedule follows the role", update)
    u.add_argument("address")
    u.add_argument("--name")
    u.add_argument("--unit")
    u.add_argument("--role", choices=[r.value for r in Role])
    u.add_argument("--birth")

    pw = cmd("passwd", "set a password (lost password, Đ13.3); generated ones must be changed at first login",
             passwd)
    pw.add_argument("address")
    password_options(pw, "new password")
    pw.add_argument("--must-change", action="store_true", help="force a change at first login also with --password")

    su = cmd("suspend", "suspend (Đ6.1–6.2): no login, no sending, still receives", suspend)
    su.add_argument("address")
    su.add_argument("--reason", required=True)

    r = cmd("restore", "restore a suspended mailbox with a new temporary password (Đ6.3)", restore)
    r.add_argument("address")

    rt = cmd("retire", "record the official leave date (Đ5.3.b): sending locks and revocation follow", retire)
    rt.add_argument("address")
    g = rt.add_mutually_exclusive_group(required=True)
    g.add_argument("--date", help="official retirement/leave/transfer date, YYYY-MM-DD (past or future)")
    g.add_argument("--clear", action="store_true", help="remove a leave date entered by mistake")

    rv = cmd("revoke", "revoke now (the address becomes unknown; the mailbox is kept for archiving)", revoke)
    rv.add_argument("address")

    q = cmd("set-quota", "set a mailbox's quota (Đ7.3.a); `default` returns to the unit/policy default", set_quota)
    q.add_argument("address")
    q.add_argument("quota", help="e.g. 5GiB, or default")

    gr = cmd("grant", "let a person send as a unit mailbox", grant)
    gr.add_argument("address")
    gr.add_argument("--send-as", required=True, metavar="UNIT_ADDRESS")

    rg = cmd("revoke-grant", "withdraw a send-as grant", revoke_grant)
    rg.add_argument("address")
    rg.add_argument("--send-as", required=True, metavar="UNIT_ADDRESS")

    ex = cmd("exempt", "record a reason that keeps an inactive mailbox from suspension (Đ6.2.a)", exempt)
    ex.add_argument("address")
    ex.add_argument("--until", help="YYYY-MM-DD")
    ex.add_argument("--reason")
    ex.add_argument("--clear", action="store_true")

    ho = cmd("hold", "hold an account's outbound mail (Đ6.2.b; it can still log in and read)", hold)
    ho.add_argument("address")
    ho.add_argument("--reason", required=True)
    rl = cmd("release", "release an outbound hold (after a burst was checked, Đ6.2.b)", release)
    rl.add_argument("address")
    sl = cmd("set-send-limit", "grant a unit's clerk more messages/recipients per window (Đ6.2.b)", set_send_limit,
             "Without --messages and --recipients the policy's limits (sending.*) apply again.")
    sl.add_argument("address")
    sl.add_argument("--messages", type=int, help="messages per sending.window")
    sl.add_argument("--recipients", type=int, help="recipients per sending.window")

    ar = cmd("archives", "archives of revoked mailboxes (Đ5.3.b) and when each may be purged", list_archives)
    ar.add_argument("address", nargs="?", help="only this address")
    ar.add_argument("--due", action="store_true", help="only those past retirement.archive_keep")
    ar.add_argument("--all", action="store_true", help="also those already purged")

    pa = cmd("purge-archive", "delete archives kept longer than retirement.archive_keep (Đ5.3.b)", purge_archive,
             "Delete the archive of a revoked mailbox once retirement.archive_keep has passed since its "
             "revocation. Refused before that day. Every purge is audited.")
    pg = pa.add_mutually_exclusive_group(required=True)
    pg.add_argument("address", nargs="?", help="the revoked address")
    pg.add_argument("--due", action="store_true", help="every archive whose keeping period has passed")
    pa.add_argument("--dry-run", action="store_true", help="list what would be deleted")

    im = cmd("import", "provision a whole unit from CSV, all rows or none",
             import_csv, "CSV columns: name, birth (YYYY-MM), unit, role (staff|leader), and optionally address, "
             "password, quota. Every row's result is reported; on any error nothing is imported.")
    im.add_argument("file", type=Path)

    ih = cmd("import-hashes", "keep users' old passwords: import password hashes from the old server (Đ8.2.d)",
             import_hashes, "CSV columns: address (here), hash (as the old server stores it: {SSHA512}, {SSHA} "
             "from Zimbra/LDAP, {SHA512-CRYPT} or $6$, {BLF-CRYPT} or $2y$/$2b$ bcrypt from Dovecot). The accounts "
             "must exist. Each hash is replaced with argon2id at the user's first login. All rows or none.")
    ih.add_argument("file", type=Path)
    ih.add_argument("--must-change", action="store_true",
                    help="make users choose a new (Đ9-compliant) password at their first login")


def _created_view(created_account: Account, temp: str | None, state: str) -> dict[str, Any]:
    return {
        "address": created_account.address,
        "name": created_account.display_name,
        "state": state,
        "must_change_password": created_account.must_change_password,
        "temporary_password": temp,
    }


async def add(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    year, month = parse_birth(args.birth)
    req = PersonRequest(
        name=args.name, unit=args.unit, role=Role(args.role), birth_year=year, birth_month=month,
        address=args.address, password=read_password(args), must_change=True if args.must_change else None,
        quota=parse_quota(args.quota) if args.quota else None, domain=args.domain,
    )
    created = await app.directory.add_person(req, actor=ctx.actor)
    acc = created.account
    data = _created_view(acc, created.temporary_password, app.directory.access(acc).state.value)
    data["quota_bytes"] = await app.directory.quota_of(acc)
    lines = [("address", acc.address), ("name", acc.display_name), ("quota", size(data["quota_bytes"]))]
    if created.temporary_password:
        lines.append(("temporary password", f"{created.temporary_password}  (shown once; must be changed)"))
    out(ctx, data, pairs(lines))
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.require_account(args.address)
    data = await account_summary(app.directory, acc, app.clock(), app.store)

    def human() -> str:
        state = data["state"] + (f" ({data['state_reason']})" if data["state_reason"] else "")
        rows = [
            ("address", data["address"]),
            ("name", data["name"]),
            ("kind", data["kind"]),
            ("unit", f"{data['unit']} ({data['unit_name']})" if data["unit"] else ""),
            ("role", data["role"] if data["kind"] == "person" else ""),
            ("birth", data["birth"]),
            ("state", state),
            ("password", data["password_state"] + (f", expires {data['password_expires_at']}"
                                                    if data["password_expires_at"] else "")),
            ("retired on", data["retired_on"]),
            ("sending locks on", data["send_locked_on"]),
            ("revoked on", data["revoke_on"]),
            ("quota", size(data["quota_bytes"])),
            ("usage", _usage(data)),
            ("mailbox", data.get("mailbox")),
            ("may send as", ", ".join(data["send_as"])),
            ("aliases", ", ".join(data["aliases"])),
            ("exempt (Đ6.2.a)", f"until {data['exempt_until']}: {data['exempt_reason']}"
             if data["exempt_until"] else ""),
            ("created", data["created_at"]),
            ("last login", data["last_login_at"]),
            ("last sent", data["last_send_at"]),
            ("last received", data["last_receive_at"]),
        ]
        return pairs([(k, v) for k, v in rows if v not in (None, "")])

    out(ctx, data, human)
    return 0


def _usage(data: dict[str, Any]) -> str:
    used = data.get("usage_bytes")
    if used is None:
        return ""
    pct = 100 * used / data["quota_bytes"] if data["quota_bytes"] else 0
    return f"{size(used)} of {size(data['quota_bytes'])} ({pct:.1f}%), {data.get('usage_messages', 0)} messages"


async def list_accounts(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    d = app.directory
    accounts = await d.list_accounts(args.unit, recursive=args.recursive)
    units = {u.id: u.local_part for u in await d.list_units()}
    rows, data = [], []
    for acc in accounts:
        access = d.access(acc)
        if args.state and access.state.value != args.state:
            continue
        unit = units.get(acc.unit_id or -1, "")
        rows.append((acc.address, acc.display_name, acc.kind, unit, acc.role.value if acc.is_person else "",
                     access.state.value, access.password.value))
        data.append({"address": acc.address, "name": acc.display_name, "kind": acc.kind, "unit": unit or None,
                     "role": acc.role.value, "state": access.state.value, "password_state": access.password.value})
    out(ctx, data, table(["address", "name", "kind", "unit", "role", "state", "password"], rows))
    return 0


async def _show_after(ctx: Context, acc: Account, message: str, extra: dict[str, Any] | None = None) -> int:
    app = await ctx.app()
    data = await account_summary(app.directory, acc, app.clock(), app.store)
    data.update(extra or {})
    out(ctx, data, message)
    return 0


async def update(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.update_account(
        args.address, name=args.name, unit=args.unit, role=Role(args.role) if args.role else None,
        birth=args.birth, actor=ctx.actor,
    )
    access = app.directory.access(acc)
    msg = f"{acc.address} updated"
    if access.send_locked_on:
        msg += f"; sending locks on {access.send_locked_on}, revoked on {access.revoke_on} (Đ5.3.b)"
    return await _show_after(ctx, acc, msg)


async def passwd(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc, temp = await app.directory.set_password(
        args.address, read_password(args), must_change=True if args.must_change else None, actor=ctx.actor
    )
    msg = f"{acc.address}: password set" + (f"\ntemporary password: {temp}  (shown once; must be changed)"
                                            if temp else "")
    return await _show_after(ctx, acc, msg, {"temporary_password": temp})


async def suspend(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.suspend(args.address, args.reason, actor=ctx.actor)
    return await _show_after(ctx, acc, f"{acc.address} suspended: no login, no sending; mail still arrives (Đ6.1)")


async def restore(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc, temp = await app.directory.restore(args.address, actor=ctx.actor)
    return await _show_after(
        ctx, acc, f"{acc.address} restored (Đ6.3)\ntemporary password: {temp}  (shown once; must be changed)",
        {"temporary_password": temp},
    )


async def retire(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    day = None if args.clear else parse_day(args.date, "date")
    acc = await app.directory.retire(args.address, day, actor=ctx.actor)
    access = app.directory.access(acc)
    if day is None:
        msg = f"{acc.address}: leave date cleared"
    else:
        msg = (f"{acc.address}: leave date {day}; sending locked from {access.send_locked_on}, "
               f"revoked on {access.revoke_on} ({acc.role.value}, Đ5.3.b)")
    return await _show_after(ctx, acc, msg)


async def revoke(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.revoke(args.address, actor=ctx.actor)
    return await _show_after(ctx, acc, f"{acc.address} revoked: unknown to SMTP, no login")


async def set_quota(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    quota = None if args.quota == "default" else parse_quota(args.quota)
    acc = await app.directory.set_quota(args.address, quota, actor=ctx.actor)
    return await _show_after(ctx, acc, f"{acc.address}: quota {size(await app.directory.quota_of(acc))}")


async def grant(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    await app.directory.grant_send_as(args.address, args.send_as, actor=ctx.actor)
    acc = await app.directory.require_account(args.address)
    return await _show_after(ctx, acc, f"{acc.address} may send as {args.send_as}")


async def revoke_grant(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    await app.directory.revoke_grant(args.address, args.send_as, actor=ctx.actor)
    acc = await app.directory.require_account(args.address)
    return await _show_after(ctx, acc, f"{acc.address} may no longer send as {args.send_as}")


async def hold(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.require_account(args.address)
    if not await app.directory.hold_outbound(acc, args.reason, actor=ctx.actor):
        raise ValidationFailed("address", f"{acc.address} is already on hold")
    return await _show_after(ctx, acc, f"{acc.address}: outbound mail on hold; it can still log in and read (Đ6.2.b)")


async def release(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.release_outbound(args.address, actor=ctx.actor)
    note = f"{acc.address}: outbound hold released; it may send again"
    held = await app.queue.list(account=acc.address, held=True)
    if held:
        # what it sent while held stays held: releasing the account is not a verdict on those messages
        note += (f"\n{len(held)} message(s) it sent while held wait in the queue: "
                 f"`mailserver queue release --account {acc.address}` sends them, "
                 f"`mailserver queue delete --account {acc.address}` discards them")
    return await _show_after(ctx, acc, note)


async def set_send_limit(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.set_send_limit(args.address, args.messages, args.recipients, actor=ctx.actor)
    messages, recipients = await app.directory.send_limit(acc)
    window = app.policy.sending.window
    return await _show_after(ctx, acc, f"{acc.address} may send {messages} messages to {recipients} recipients "
                                       f"per {window} (Đ6.2.b)")


async def exempt(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    if args.clear:
        acc = await app.directory.exempt(args.address, None, None, actor=ctx.actor)
        return await _show_after(ctx, acc, f"{acc.address}: exemption cleared")
    if not args.until:
        raise ValidationFailed("until", "give --until YYYY-MM-DD and --reason, or --clear")
    acc = await app.directory.exempt(args.address, parse_day(args.until, "until"), args.reason, actor=ctx.actor)
    return await _show_after(ctx, acc, f"{acc.address}: exempt from the inactivity rule until {args.until}")


def _address(ctx_app: Any, text: str) -> str:
    local, domain = ctx_app.directory.split(text)
    return f"{local}@{domain}"


async def list_archives(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    records = ArchiveRecords(app.directory, app.clock)
    today = local_date(app.clock(), app.policy.tz)
    entries = await records.list(address=_address(app, args.address) if args.address else None,
                                 include_purged=args.all)
    if args.due:
        entries = [e for e in entries if e.due(today)]
    data = [{**e.public(), "due": e.due(today)} for e in entries]
    out(ctx, data, lambda: table(
        ["address", "revoked", "purge after", "messages", "size", "archive", "state"],
        [(d["address"], d["revoked_on"], d["purge_after"], d["messages"], size(d["bytes"]), d["path"],
          "purged" if d["purged_at"] else ("due" if d["due"] else "kept")) for d in data])
        if data else "no archives")
    return 0


async def purge_archive(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    records = ArchiveRecords(app.directory, app.clock)
    today = local_date(app.clock(), app.policy.tz)
    if args.due:
        doomed = [e for e in await records.list() if e.due(today)]
    else:
        address = _address(app, args.address)
        entries = await records.list(address=address)
        if not entries:
            raise NotFound("address", f"no archive of {address} (see mailserver account archives)")
        doomed = [e for e in entries if e.due(today)]
        if not doomed:
            keep = min(e.purge_after for e in entries)
            raise ValidationFailed(
                "address", f"the archive of {address} is kept until {keep - timedelta(days=1)} "
                f"(retirement.archive_keep {app.policy.retirement.archive_keep} after revocation, Đ5.3.b)")
    if not args.dry_run:
        doomed = [await records.purge(e, actor=ctx.actor) for e in doomed]
    data = [e.public() for e in doomed]
    verb = "would delete" if args.dry_run else "deleted"
    out(ctx, data, "\n".join(f"{verb} {e.path} ({e.address}, revoked {e.revoked_on})" for e in doomed)
        or "no archive is due")
    return 0


IMPORT_COLUMNS = {"name", "birth", "unit", "role", "address", "password", "quota"}
HASH_COLUMNS = {"address", "hash"}


def _read_rows(path: Path, columns: set[str] = IMPORT_COLUMNS, required: str = "name") -> list[dict[str, str]]:
    reader = open_csv(path, "file")
    headers = [h.strip().lower() for h in reader.fieldnames or []]
    for column in required.split():
        if column not in headers:
            raise ValidationFailed("file", f"{path}: the header row must have a '{column}' column")
    unknown = set(headers) - columns
    if unknown:
        raise ValidationFailed("file", f"{path}: unknown columns {', '.join(sorted(unknown))}")
    return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _request(row: dict[str, str], index: int) -> PersonRequest:
    from storage.directory import ImportFailed

    try:
        year, month = parse_birth(row.get("birth") or None)
        role = row.get("role") or "staff"
        if role not in ("staff", "leader"):
            raise ValidationFailed("role", f'"{role}" is not staff or leader')
        return PersonRequest(
            name=row.get("name", ""), unit=row.get("unit") or None, role=Role(role), birth_year=year,
            birth_month=month, address=row.get("address") or None, password=row.get("password") or None,
            quota=parse_quota(row["quota"]) if row.get("quota") else None,
        )
    except ValidationFailed as e:
        raise ImportFailed(index, e) from None


async def import_csv(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    rows = _read_rows(args.file)
    reqs = [_request(row, i) for i, row in enumerate(rows, 1)]
    created = await app.directory.import_people(reqs, actor=ctx.actor)
    data = [
        {"row": i, **_created_view(c.account, c.temporary_password, app.directory.access(c.account).state.value)}
        for i, c in enumerate(created, 1)
    ]
    out(ctx, data, table(
        ["row", "address", "name", "temporary password"],
        [(d["row"], d["address"], d["name"], d["temporary_password"] or "(given)") for d in data],
    ) + f"\n{len(data)} accounts created")
    return 0


async def import_hashes(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    rows = _read_rows(args.file, HASH_COLUMNS, "address hash")
    updated = await app.directory.import_password_hashes([(r.get("address", ""), r.get("hash", "")) for r in rows],
                                                         must_change=args.must_change, actor=ctx.actor)
    data = [{"row": i, "address": a.address, "scheme": _scheme(a.password_hash)} for i, a in enumerate(updated, 1)]
    out(ctx, data, table(["row", "address", "hash"], [(d["row"], d["address"], d["scheme"]) for d in data])
        + f"\n{len(data)} password hashes imported; each becomes argon2id at the user's first login")
    return 0


def _scheme(stored: str | None) -> str:
    """The kind of an imported hash, for the operator's table (never the hash itself)."""
    s = stored or ""
    for prefix, name in (("{SSHA512}", "SSHA512"), ("{SSHA}", "SSHA"), ("$6$", "SHA512-CRYPT"),
                         ("$5$", "SHA256-CRYPT"), ("$2", "bcrypt"), ("$argon2", "argon2")):
        if s.upper().startswith(prefix.upper()):
            return name
    return "other"
