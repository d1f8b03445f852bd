"""`mailserver reindex ADDRESS|--all`: rebuild mail indexes from the Maildir files."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, size, table
from policy.errors import ValidationFailed


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reindex", parents=parents, help="rebuild a mailbox's index from its files",
        description="Rebuild the index of a mailbox from its Maildir files. UIDs, UIDVALIDITY, flags and "
        "keywords are kept (they live in the files); mail clients do not download anything again. "
        "Safe while the server runs. A missing or corrupt index is rebuilt automatically; use this after "
        "restoring files from a backup or moving mail in by hand.",
    )
    p.add_argument("address", nargs="?", help="the account (default with --all: every account)")
    p.add_argument("--all", action="store_true", help="every account that has a mailbox")
    p.set_defaults(handler=run)


async def run(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    if bool(args.address) == bool(args.all):
        raise ValidationFailed("address", "give one ADDRESS, or --all")
    if args.address:
        accounts = [await app.directory.require_account(args.address)]
    else:
        accounts = [a for a in await app.directory.list_accounts() if app.store.has_mailbox(a)]
    results = [await app.store.reindex(acc) for acc in accounts]
    data = [{"address": r.address, "folders": r.folders, "messages": r.messages, "bytes": r.bytes,
             "seconds": round(r.seconds, 3)} for r in results]
    out(ctx, data, table(["address", "folders", "messages", "size", "seconds"],
                         [(r.address, r.folders, r.messages, size(r.bytes), f"{r.seconds:.2f}") for r in results]))
    return 0
