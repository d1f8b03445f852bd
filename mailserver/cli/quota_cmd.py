"""`mailserver quota show|recalc` (Đ7.3): exact mailbox usage, and its check against the disk."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, pairs, size, table


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quota", help="mailbox usage and quota (Đ7.3)")
    qsub = p.add_subparsers(dest="quota_command", metavar="ACTION", required=True)

    s = qsub.add_parser("show", parents=parents, help="usage, quota and the largest folders of a mailbox")
    s.add_argument("address")
    s.set_defaults(handler=show)

    r = qsub.add_parser(
        "recalc", parents=parents, help="recount usage from the files and report any drift",
        description="Walk the Maildir files of one mailbox (or all), compare with the usage the server "
        "recorded, report the difference and correct the record. Nothing changes when there is no drift.",
    )
    r.add_argument("address", nargs="?", help="one account (default: every account that has a mailbox)")
    r.set_defaults(handler=recalc)


async def show(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    acc = await app.directory.require_account(args.address)
    usage = await app.store.usage(acc)
    folders = await app.store.folder_usage(acc)
    data = {"address": acc.address, "usage_bytes": usage.bytes, "usage_messages": usage.messages,
            "quota_bytes": usage.quota, "percent": round(usage.percent, 1),
            "folders": [{"name": f.name, "bytes": f.bytes, "messages": f.messages} for f in folders]}

    def human() -> str:
        head = pairs([("address", acc.address), ("usage", f"{size(usage.bytes)} of {size(usage.quota)} "
                                                          f"({usage.percent:.1f}%)"),
                      ("messages", usage.messages)])
        return head + "\n\n" + table(["folder", "size", "messages"],
                                     [(f.name, size(f.bytes), f.messages) for f in folders])

    out(ctx, data, human)
    return 0


async def recalc(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    if args.address:
        accounts = [await app.directory.require_account(args.address)]
    else:
        accounts = [a for a in await app.directory.list_accounts() if app.store.has_mailbox(a)]
    drifts = [await app.store.recalc(acc) for acc in accounts]
    data = [{"address": d.address, "recorded_bytes": d.recorded_bytes, "recorded_messages": d.recorded_messages,
             "disk_bytes": d.disk_bytes, "disk_messages": d.disk_messages, "drift_bytes": d.drift_bytes,
             "drift_messages": d.drift_messages} for d in drifts]
    drifted = [d for d in drifts if d.drift_bytes or d.drift_messages]

    def human() -> str:
        rows = [(d.address, size(d.recorded_bytes), d.recorded_messages, size(d.disk_bytes), d.disk_messages,
                 f"{d.drift_bytes:+d} bytes, {d.drift_messages:+d} messages" if d in drifted else "none")
                for d in drifts]
        summary = (f"\n{len(drifted)} of {len(drifts)} mailboxes had drifted; their usage is corrected"
                   if drifted else f"\nno drift in {len(drifts)} mailboxes")
        return table(["address", "recorded", "msgs", "on disk", "msgs", "drift"], rows) + summary

    out(ctx, data, human)
    return 0
