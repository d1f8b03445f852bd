"""`mailserver alias add|remove|list`."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, table


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("alias", help="addresses that deliver to other addresses")
    asub = p.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    a = asub.add_parser("add", parents=parents, help="add an alias (several targets: add it again)")
    a.add_argument("address")
    a.add_argument("target")
    a.set_defaults(handler=add)
    r = asub.add_parser("remove", parents=parents, help="remove an alias (all targets, or one)")
    r.add_argument("address")
    r.add_argument("target", nargs="?")
    r.set_defaults(handler=remove)
    ls = asub.add_parser("list", parents=parents, help="list aliases")
    ls.set_defaults(handler=list_aliases)


async def add(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    alias = await app.directory.add_alias(args.address, args.target, actor=ctx.actor)
    out(ctx, {"address": alias.address, "target": alias.target}, f"{alias.address} → {alias.target}")
    return 0


async def remove(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    n = await app.directory.remove_alias(args.address, args.target, actor=ctx.actor)
    out(ctx, {"address": args.address, "removed": n}, f"{args.address}: {n} target(s) removed")
    return 0


async def list_aliases(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    aliases = await app.directory.list_aliases()
    out(ctx, [{"address": a.address, "target": a.target} for a in aliases],
        table(["alias", "target"], [(a.address, a.target) for a in aliases]))
    return 0
