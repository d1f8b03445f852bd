"""`mailserver spam check FILE` and `spam learn`: the spam filter (Đ8.2.b, Đ13.6) as an operator sees it.

`check` answers the question a user brings to the help desk — "why is this
message in my Junk folder?" or "why was my message not sent?" — with the
score, every SpamAssassin rule that fired (points and description), and
what this server's policy does with that score on the MX and on
submission; with `--to` also what the allow and block lists of that
mailbox say. `learn` teaches spamd's Bayes filter from saved messages (a
corpus of the province's spam and ham), as moving mail in IMAP does.
"""

from __future__ import annotations

import argparse
import sys
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from mailserver.cli.common import Context, out, pairs, table
from policy.errors import ValidationFailed
from policy.spam import outbound_refused, policy_list_decision, verdict
from storage.store import to_crlf

WHAT = {"ham": "INBOX", "junk": "the Junk folder", "reject": "refused at DATA with 550 5.7.1"}


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("spam", help="the spam filter: score a message, teach spamd (Đ8.2.b, Đ13.6)")
    ssub = p.add_subparsers(dest="spam_command", metavar="ACTION", required=True)
    c = ssub.add_parser("check", parents=parents, help="the score of a message and the rules that fired",
                        description="Send a saved message (.eml, as stored in Maildir; - for standard input) to "
                        "spamd and show its score, each rule that fired, and what the policy's thresholds "
                        "(spam.junk, spam.reject, spam.outbound_reject) do with it.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--to", metavar="ADDRESS", help="also show what the allow and block lists of this mailbox say")
    c.add_argument("--from", dest="sender", metavar="ADDRESS",
                   help="the envelope sender for the lists (default: the From: header)")
    c.set_defaults(handler=run_check)
    learn = ssub.add_parser("learn", parents=parents, help="teach spamd's Bayes filter (spamc -L spam|ham)",
                            description="Teach spamd that saved messages are spam or ham, as users do by moving "
                            "mail into or out of Junk. spamd must run with --allow-tell.")
    learn.add_argument("kind", choices=["spam", "ham"])
    learn.add_argument("files", metavar="FILE", nargs="+")
    learn.set_defaults(handler=run_learn)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValidationFailed("file", f'cannot read "{name}": {e.strerror or e}') from None
    if not data.strip():
        raise ValidationFailed("file", f'"{name}" is empty')
    return data


def _spamd_input(ctx: Context, data: bytes) -> bytes:
    """The message as the server gives it to spamd (CRLF lines, no X-Spam-* fields, cut at
    spam.max_scan_size), so a message saved from someone's Junk folder scores as it did on arrival."""
    from smtp.spam import spamd_input

    return spamd_input(to_crlf(data), ctx.loaded.policy.spam.max_scan_size)


def _client(ctx: Context) -> Any:
    from mailserver.smtp_wiring import spamd_client  # the SMTP stack loads only for this command

    client = spamd_client(ctx.loaded.settings)
    if not client.configured:
        raise ValidationFailed("spamd", "no spamd is configured (spamd.host and spamd.port, or spamd.socket, in "
                                        "mailserver.yaml)")
    return client


def _senders(data: bytes, sender: str | None) -> list[str]:
    from smtp.headers import header_value, split_message

    head, _ = split_message(to_crlf(data))
    found = [a for _, a in getaddresses([header_value(head, "From") or ""]) if a]
    return [sender, *found] if sender else found


async def run_check(ctx: Context, args: argparse.Namespace) -> int:
    from smtp.spamd import SpamdUnavailable

    data = _read(args.file)
    policy = ctx.loaded.policy.spam
    client = _client(ctx)
    try:
        report = await client.report(_spamd_input(ctx, data))
    except SpamdUnavailable as e:
        raise ValidationFailed("spamd", str(e)) from None
    inbound = verdict(report.score, policy.junk, policy.reject)
    refused = outbound_refused(report.score, policy.outbound_reject)
    result: dict[str, Any] = {
        "spamd": client.address, "score": report.score,
        "thresholds": {"junk": policy.junk, "reject": policy.reject, "outbound_reject": policy.outbound_reject},
        "received": inbound.value, "submitted": "refused" if refused else "sent",
        "rules": [{"points": r.points, "name": r.name, "description": r.description} for r in report.rules],
    }
    rows: list[tuple[str, Any]] = [
        ("spamd", client.address),
        ("score", f"{report.score:.1f}  (Junk from {policy.junk:g}, refused from {policy.reject:g}; "
                  f"submitted mail refused from {policy.outbound_reject:g})"),
        ("received (MX)", f"{WHAT[inbound.value]} (Article 8.2.b)"),
        ("submitted", ("refused with 550 5.7.1" if refused else "sent") + " (Article 13.6)"),
    ]
    if args.to:
        mailbox = args.to.strip().lower()
        match = policy_list_decision(policy, mailbox, _senders(data, args.sender))
        result["list"] = None if match is None else {"action": match.action, "scope": match.scope,
                                                     "entry": match.entry}
        rows.append((f"lists of {mailbox}", "no list names the sender" if match is None else
                     f"{match.describe()} ({'INBOX, not scored' if match.action == 'allow' else 'refused'}; an "
                     "allow entry counts only when SPF and DMARC do not fail)"))
    out(ctx, result, lambda: pairs(rows) + "\n\n" + table(
        ["points", "rule", "description"],
        [(f"{r.points:.1f}", r.name, r.description) for r in sorted(report.rules, key=lambda r: -abs(r.points))],
    ))
    return 0


async def run_learn(ctx: Context, args: argparse.Namespace) -> int:
    from smtp.spamd import SpamdUnavailable

    client = _client(ctx)
    results = []
    for name in args.files:
        data = _read(name)
        try:
            learned = await client.learn(_spamd_input(ctx, data), spam=args.kind == "spam")
        except SpamdUnavailable as e:
            raise ValidationFailed("spamd", str(e)) from None
        results.append({"file": name, "learned": learned})
    out(ctx, results, lambda: table(["file", f"learned as {args.kind}"],
                                    [(r["file"], "yes" if r["learned"] else "already known") for r in results]))
    return 0
