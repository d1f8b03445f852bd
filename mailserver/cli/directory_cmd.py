"""`mailserver directory export` (Đ12.5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailserver.cli.common import Context
from mailserver.publication import to_csv, to_html, unit_directory


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("directory", help="publish the directory (Đ12.5)")
    dsub = p.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    e = dsub.add_parser("export", parents=parents, help="a unit and its sub-units as CSV or HTML")
    e.add_argument("--unit", required=True, help="the unit's address, e.g. pnv.tuyan")
    e.add_argument("--format", choices=["csv", "html"], default="csv")
    e.add_argument("--output", type=Path, help="write to this file instead of stdout")
    e.set_defaults(handler=export)


async def export(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    root, entries = await unit_directory(app.directory, args.unit)
    text = to_csv(entries) if args.format == "csv" else to_html(root, entries)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(entries)} mailboxes written to {args.output}")
    else:
        print(text, end="")
    return 0
