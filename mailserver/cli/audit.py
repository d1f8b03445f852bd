"""`mailserver audit list`: who did what, when (Đ5.1–2)."""

from __future__ import annotations

import argparse
import json

from mailserver.cli.common import Context, out, parse_moment, table


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="the audit log of operator and automatic actions")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", parents=parents, help="newest entries first")
    ls.add_argument("--target", help="only entries about this address (or e.g. maintenance:3, queue:<id>)")
    ls.add_argument("--since", help="YYYY-MM-DD or date-time")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(handler=list_entries)


async def list_entries(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    since = parse_moment(args.since, app.policy.tz, "since") if args.since else None
    target = args.target
    if target and ":" not in target and "/" not in target:  # an address, not "queue:<ID>" or a log folder
        target = target.lower()
        if "@" not in target:
            target = f"{target}@{app.directory.primary_domain}"
    entries = await app.directory.audit_entries(target=target, since=since, limit=args.limit)
    tz = app.policy.tz
    data = [
        {"at": e.at.astimezone(tz).isoformat(), "actor": e.actor, "action": e.action, "target": e.target,
         "rule": e.rule, "before": e.before, "after": e.after}
        for e in entries
    ]

    def change(e: dict) -> str:
        if e["after"] is None:
            return ""
        if isinstance(e["after"], dict) and isinstance(e["before"], dict):
            diff = {k: v for k, v in e["after"].items() if e["before"].get(k) != v}
            return json.dumps(diff, ensure_ascii=False, default=str)
        return json.dumps(e["after"], ensure_ascii=False, default=str)

    out(ctx, data, table(["at", "actor", "action", "target", "rule", "change"],
                         [(d["at"][:19], d["actor"], d["action"], d["target"], d["rule"], change(d)[:80])
                          for d in data]))
    return 0
