"""`mailserver log search`: find mail-log events (Đ7.2) by sender, recipient, time, Message-ID."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, parse_moment, table
from storage.maillog import Query, search


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("log", help="the mail log (Đ7.2: sending, receiving, refusals, errors)")
    lsub = p.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    s = lsub.add_parser("search", parents=parents, help="events matching every given filter, oldest first",
                        description="Search the daily mail-log files (<data>/log/mail-YYYY-MM-DD.jsonl).")
    s.add_argument("--from", dest="sender", help="envelope sender (substring, case-insensitive)")
    s.add_argument("--to", dest="recipient", help="recipient (substring, case-insensitive)")
    s.add_argument("--since", help="YYYY-MM-DD or date-time (policy time zone)")
    s.add_argument("--until", help="YYYY-MM-DD or date-time (policy time zone)")
    s.add_argument("--message-id", help="the Message-ID header, with or without <>")
    s.add_argument("--queue-id", help="the id in the 250 reply and Received: header")
    s.add_argument("--event", help="connect, auth, accepted, rejected, deferred, delivered, bounced, virus, hold")
    s.add_argument("--limit", type=int, default=1000)
    s.set_defaults(handler=run_search)


async def run_search(ctx: Context, args: argparse.Namespace) -> int:
    loaded = ctx.loaded
    tz = loaded.policy.tz
    since = parse_moment(args.since, tz, "since") if args.since else None
    until = parse_moment(args.until, tz, "until") if args.until else None
    if until is not None and args.until and len(args.until) == 10:
        from datetime import timedelta

        until = until + timedelta(days=1)  # a bare date means the whole day
    query = Query(sender=args.sender, recipient=args.recipient, since=since, until=until,
                  message_id=args.message_id, queue_id=args.queue_id, event=args.event)
    found = []
    for rec in search(loaded.settings.paths.log_dir, query, tz):
        found.append(rec)
        if len(found) >= args.limit:
            break
    out(ctx, found, lambda: table(
        ["time", "event", "queue id", "from", "to", "code", "reason"],
        [(r["time"][:19], r["event"], r.get("queue_id"), r.get("sender"), ",".join(r.get("recipients") or []),
          r.get("code"), (r.get("reason") or r.get("result") or "")[:60]) for r in found],
    ))
    return 0
