"""`mailserver queue …`: look into the outbound queue and act on it while `serve` runs.

The queue is SQLite plus files (storage/queue.py), so these commands work
beside a running server: a retry or release is picked up by its workers
within `outbound.poll_interval`. Every action is written to the audit log
(who, what, when: `audit list --target queue:<id>`) and to the mail log
(Đ7.2), so a deleted message can be accounted for.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from mailserver.app import App
from mailserver.cli.common import Context, out, pairs, size, table
from policy.errors import ValidationFailed
from storage.maillog import MailLog
from storage.queue import Entry


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queue", help="the outbound queue: mail waiting to leave for other servers")
    qsub = p.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    def cmd(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        c = qsub.add_parser(name, parents=parents, help=help_text, description=help_text)
        c.set_defaults(handler=handler)
        return c

    ls = cmd("list", "queued messages, oldest first, with the last answer of the remote servers", list_entries)
    ls.add_argument("--held", action="store_true", help="only held messages (Đ6.2.b)")
    ls.add_argument("--account", help="only what this account submitted")
    ls.add_argument("--sender", help="envelope sender contains this")
    ls.add_argument("--limit", type=int, default=1000)

    sh = cmd("show", "one message: envelope, hold, and every recipient's attempts and last answer", show)
    sh.add_argument("id")
    sh.add_argument("--message", action="store_true", help="also print the queued message itself")

    rt = cmd("retry", "try now instead of at the next scheduled attempt", retry)
    rt.add_argument("ids", nargs="*", default=[], metavar="ID")
    rt.add_argument("--all", action="store_true", help="every message that is not held")

    de = cmd("delete", "remove messages without delivering them (no bounce is sent)", delete)
    _selection(de)

    ho = cmd("hold", "keep messages from being delivered until released", hold)
    ho.add_argument("ids", nargs="+", metavar="ID")
    ho.add_argument("--reason", required=True)

    re_ = cmd("release", "let held messages go (the 5-day give-up clock starts again)", release)
    _selection(re_)


def _selection(c: argparse.ArgumentParser) -> None:
    c.add_argument("ids", nargs="*", default=[], metavar="ID")
    c.add_argument("--account", help="every message this account submitted (e.g. after a compromise, Đ6.2.b)")


async def _chosen(app: App, args: argparse.Namespace, *, held_only: bool = False) -> list[str]:
    if bool(args.ids) == bool(args.account):
        raise ValidationFailed("id", "name queue ids, or --account ADDRESS (not both)")
    if args.ids:
        return list(args.ids)
    account = args.account.strip().lower()
    if "@" not in account:
        account = f"{account}@{app.directory.primary_domain}"
    entries = await app.queue.list(account=account, held=True if held_only else None)
    if not entries:
        raise ValidationFailed("account", f"no {'held ' if held_only else ''}messages of {account} in the queue")
    return [e.id for e in entries]


def _local(moment: datetime | None, tz: Any) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""


def _row(e: Entry, tz: Any) -> tuple[Any, ...]:
    pending = e.pending
    last = e.last_answer()
    answer = f"{last.code} {last.reply}" if last and last.code else (e.hold_reason or "")
    return (e.id, _local(e.arrived_at, tz), e.sender or "<>", f"{len(pending)}/{len(e.recipients)}",
            (pending[0].rcpt if pending else e.recipients[0].rcpt) + (" …" if len(pending) > 1 else ""),
            size(e.size), e.state, _local(e.next_attempt_at, tz) if not e.held else "", answer[:70])


async def list_entries(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    entries = await app.queue.list(held=True if args.held else None, account=args.account, sender=args.sender,
                                   limit=args.limit)
    tz = app.policy.tz
    out(ctx, [e.public() for e in entries], lambda: table(
        ["id", "arrived", "from", "left", "to", "size", "state", "next try", "last answer"],
        [_row(e, tz) for e in entries]) + f"\n{len(entries)} message(s)")
    return 0


async def _require(app: App, queue_id: str) -> Entry:
    e = await app.queue.get(queue_id)
    if e is None:
        raise ValidationFailed("id", f"no message {queue_id} in the queue (`mailserver queue list`)")
    return e


async def show(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    e = await _require(app, args.id)
    tz = app.policy.tz
    data = e.public()
    text = ""
    if args.message:
        text = (await app.queue.read_message(e.id)).decode("utf-8", "replace")
        data["message"] = text

    def human() -> str:
        head = pairs([
            ("id", e.id), ("state", e.state), ("from", e.sender or "<> (a bounce)"), ("account", e.account),
            ("subject", e.subject), ("message-id", e.message_id), ("size", size(e.size)),
            ("arrived", _local(e.arrived_at, tz)), ("gives up", _local(e.expires_at, tz)),
            ("held", f"{_local(e.held_at, tz)} by {e.hold_actor}: {e.hold_reason}" if e.held else "no"),
            ("delay notice", _local(e.delay_notified_at, tz) or "not sent"),
        ])
        rcpts = table(["recipient", "state", "tries", "last try", "next try", "server", "tls", "answer"], [
            (r.rcpt, r.state, r.attempts, _local(r.last_attempt_at, tz),
             _local(r.next_attempt_at, tz) if r.state == "pending" else "", r.remote_host, r.tls,
             f"{r.code} {r.reply}" if r.code else "")
            for r in e.recipients])
        return head + "\n\n" + rcpts + (f"\n\n{text}" if text else "")

    out(ctx, data, human)
    return 0


async def _audit(ctx: Context, app: App, action: str, e: Entry, *, after: Any = None, rule: str | None = None,
                 reason: str | None = None) -> None:
    """Who did what to which message: the audit log, and the mail log next to the message's own lines."""
    before = {"state": e.state, "sender": e.sender, "recipients": [r.rcpt for r in e.pending],
              "subject": e.subject}
    await app.directory.audit(ctx.actor, f"queue.{action}", f"queue:{e.id}", before=before, after=after, rule=rule)
    log = MailLog(app.settings.paths.log_dir, app.policy.tz)
    try:
        log.event(f"queue-{action}", queue_id=e.id, message_id=e.message_id, sender=e.sender,
                  recipients=[r.rcpt for r in e.pending], account=e.account, actor=ctx.actor, reason=reason,
                  result=action)
    finally:
        log.close()


async def retry(ctx: Context, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise ValidationFailed("id", "name queue ids, or --all (not both)")
    app = await ctx.app()
    entries = await app.queue.retry(None if args.all else args.ids)
    for e in entries:
        await _audit(ctx, app, "retry", e)
    out(ctx, [e.id for e in entries], f"{len(entries)} message(s) will be tried now by the running server")
    return 0


async def delete(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    removed = []
    for qid in await _chosen(app, args):
        e = await app.queue.delete(qid)
        await _audit(ctx, app, "delete", e)
        removed.append(e.id)
    out(ctx, removed, f"deleted {len(removed)} message(s): {' '.join(removed)}")
    return 0


async def hold(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    for qid in args.ids:
        before = await _require(app, qid)
        await app.queue.hold(qid, args.reason, ctx.actor)
        await _audit(ctx, app, "hold", before, after={"reason": args.reason}, rule="Đ6.2.b", reason=args.reason)
    out(ctx, args.ids, f"held {len(args.ids)} message(s); `mailserver queue release ID` lets them go")
    return 0


async def release(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    released = []
    for qid in await _chosen(app, args, held_only=True):
        before = await _require(app, qid)
        await app.queue.release(qid)
        await _audit(ctx, app, "release", before, after={"state": "released"}, rule="Đ6.2.b")
        released.append(qid)
    out(ctx, released, f"released {len(released)} message(s); the running server delivers them now")
    return 0
