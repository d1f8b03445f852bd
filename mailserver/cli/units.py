"""`mailserver unit add|list|show|set-quota` (Đ4.1, Đ7.3.a)."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, pairs, parse_quota, read_password, size, table
from policy.naming import UnitKind


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("unit", help="units (departments, districts, communes, sub-units) and their mailboxes")
    usub = p.add_subparsers(dest="unit_command", metavar="ACTION", required=True)

    a = usub.add_parser(
        "add", parents=parents, help="add a unit and its mailbox",
        description='Address from the name by Đ4.1: "Sở Thông tin và Truyền thông" --kind department → stttt@; '
        '"Tuy Hòa" --kind district → tuyhoa@; "Hòa An" --kind commune --parent phuhoa → hoan.phuhoa@; '
        '"Phòng Nội vụ" --kind subunit --parent tuyan → pnv.tuyan@.',
    )
    a.add_argument("name", help="full Vietnamese name, with diacritics")
    a.add_argument("--kind", required=True, choices=[k.value for k in UnitKind])
    a.add_argument("--parent", help="parent unit's address (e.g. tuyan, stttt)")
    a.add_argument("--abbrev", help="override the abbreviation the naming rule gives")
    a.add_argument("--quota", help="default quota for the unit's mailboxes, e.g. 5GiB (Đ7.3.a)")
    a.add_argument("--password", help="the unit mailbox's password (default: a temporary one)")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.set_defaults(handler=add)

    ls = usub.add_parser("list", parents=parents, help="list units")
    ls.set_defaults(handler=list_units)

    s = usub.add_parser("show", parents=parents, help="a unit, its sub-units and mailboxes")
    s.add_argument("unit", help="the unit's address, e.g. pnv.tuyan")
    s.set_defaults(handler=show)

    q = usub.add_parser("set-quota", parents=parents, help="default quota for a unit's mailboxes (Đ7.3.a)")
    q.add_argument("unit")
    q.add_argument("quota", help="e.g. 5GiB; never below the policy default (Đ7.3.b)")
    q.set_defaults(handler=set_quota)


async def add(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    quota = parse_quota(args.quota) if args.quota else None
    created = await app.directory.add_unit(
        args.name, UnitKind(args.kind), parent=args.parent, abbrev=args.abbrev, password=read_password(args),
        quota=quota, actor=ctx.actor,
    )
    unit = created.unit
    assert unit
    data = {**unit.public(), "temporary_password": created.temporary_password}
    lines = [("unit", unit.name), ("address", unit.address), ("kind", unit.kind.value)]
    if created.temporary_password:
        lines.append(("temporary password", f"{created.temporary_password}  (shown once; must be changed)"))
    out(ctx, data, pairs(lines))
    return 0


async def list_units(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    units = await app.directory.list_units()
    by_id = {u.id: u for u in units}
    rows = []
    data = []
    for u in units:
        parent = by_id[u.parent_id].local_part if u.parent_id in by_id else None
        rows.append((u.address, u.name, u.kind.value, parent or "", size(u.quota_bytes)))
        data.append({**u.public(), "parent": parent})
    out(ctx, data, table(["address", "name", "kind", "parent", "quota"], rows))
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    d = app.directory
    tree = await d.unit_tree(args.unit)
    unit = tree[0]
    accounts = await d.list_accounts(unit.local_part)
    data = {
        **unit.public(),
        "subunits": [u.public() for u in tree[1:]],
        "accounts": [{"address": a.address, "name": a.display_name, "state": d.access(a).state.value}
                     for a in accounts],
    }

    def human() -> str:
        text = pairs([("unit", unit.name), ("address", unit.address), ("kind", unit.kind.value),
                      ("default quota", size(unit.quota_bytes) or "policy default")])
        if tree[1:]:
            text += "\n\nsub-units:\n" + table(["address", "name", "kind"],
                                                [(u.address, u.name, u.kind.value) for u in tree[1:]])
        text += "\n\nmailboxes:\n" + table(
            ["address", "name", "state"], [(a["address"], a["name"], a["state"]) for a in data["accounts"]]
        )
        return text

    out(ctx, data, human)
    return 0


async def set_quota(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    unit = await app.directory.set_unit_quota(args.unit, parse_quota(args.quota), actor=ctx.actor)
    out(ctx, unit.public(), f"{unit.address}: default quota {size(unit.quota_bytes)}")
    return 0
