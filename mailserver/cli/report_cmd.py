"""`mailserver report usage|mailboxes` (Đ12.9, Đ14.1.c, Đ14.3.đ)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from mailserver.cli.common import Context, parse_day, table
from mailserver.reports import (
    MAILBOX_COLUMNS,
    SHORT,
    USAGE_COLUMNS,
    Reports,
    UsageReport,
    mailboxes_render,
    mailboxes_rows,
    mailboxes_title,
    usage_csv,
    usage_html,
    usage_json,
    usage_rows,
    usage_title,
)
from policy.calendar import local_date
from policy.deadlines import PERIODS, report_period
from policy.errors import ValidationFailed

FORMATS = ["table", "csv", "json", "html"]


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="the reports the province files (Đ12.9, Đ14.1.c, Đ14.3.đ)")
    rsub = p.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    u = rsub.add_parser(
        "usage", parents=parents, help="per unit: mailboxes by state, storage, traffic, refusals (3/6/12 months)",
        description="Đ14.3.đ (every 3, 6 and 12 months) and Đ14.1.c: per unit and sub-unit, mailboxes by state, "
        "created, retired, revoked and suspended for inactivity in the period, storage against quota, messages "
        "sent and received, virus and spam refusals, top senders. Traffic comes from the daily counters the "
        "jobs keep (they outlive the 6-month mail log).")
    u.add_argument("--period", required=True, choices=list(PERIODS))
    u.add_argument("--end", help="first day after the period, YYYY-MM-DD (default: today, so the period ends "
                   "yesterday); e.g. --period 6m --end 2027-07-01 is the first half of 2027")
    u.add_argument("--unit", help="a unit and its sub-units (default: the whole province)")
    u.add_argument("--format", choices=FORMATS, default="table")
    u.add_argument("--output", type=Path, help="write to this file instead of stdout")
    u.set_defaults(handler=usage)
    m = rsub.add_parser("mailboxes", parents=parents, help="Đ12.9: the 6-monthly list of mailboxes in use of a unit")
    m.add_argument("--unit", required=True, help="the unit's address, e.g. stttt or pnv.tuyan (with sub-units)")
    m.add_argument("--format", choices=FORMATS, default="table")
    m.add_argument("--output", type=Path)
    m.set_defaults(handler=mailboxes)


def _format(ctx: Context, args: argparse.Namespace) -> str:
    return "json" if ctx.json else args.format


def _emit(args: argparse.Namespace, text: str, what: str) -> None:
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"{what} written to {args.output}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def usage_table(report: UsageReport) -> str:
    headers = [SHORT.get(k, k.replace("_", " ")) for k, _ in USAGE_COLUMNS]
    text = usage_title(report) + "\n\n" + table(headers, usage_rows(report, True))
    text += f"\n(storage as of {report.storage_as_of}; states at the end of the period)"
    if report.top_senders:
        text += "\n\ntop senders\n" + table(["address", "name", "unit", "sent"],
                                            [(t["address"], t["name"], t["unit"], t["sent"])
                                             for t in report.top_senders])
    if report.refused_by_reason:
        text += "\n\nrefused by reason\n" + table(["reason", "messages"], list(report.refused_by_reason.items()))
    return text


async def usage(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    now = app.clock()
    end = parse_day(args.end, "end") if args.end else local_date(now, app.policy.tz)
    if end > local_date(now, app.policy.tz) + timedelta(days=1):
        raise ValidationFailed("end", f"{end} is in the future")
    report = await Reports(app.directory, app.store, now).usage(report_period(args.period, end), args.unit)
    fmt = _format(ctx, args)
    text = {"json": usage_json, "csv": usage_csv, "html": usage_html}.get(fmt, usage_table)(report)
    _emit(args, text, f"usage report ({len(report.rows)} units)")
    return 0


async def mailboxes(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    now = app.clock()
    root, entries = await Reports(app.directory, app.store, now).mailboxes(args.unit)
    fmt = _format(ctx, args)
    if fmt == "table":
        text = mailboxes_title(root, now) + "\n\n" + table(MAILBOX_COLUMNS, mailboxes_rows(entries))
        text += f"\n{len(entries)} mailboxes"
    else:
        text = mailboxes_render(root, entries, fmt, now)
    _emit(args, text, f"{len(entries)} mailboxes")
    return 0
