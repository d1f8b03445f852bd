"""Đ8.2.b, Đ13.6: what the spam checks decide for one message, and the header fields that show it.

`smtp.checks.spam` (MX) and `smtp.checks.outbound_spam` (submission) call
`inbound()` and `outbound()` here; the rules themselves (thresholds, allow
and block lists) are the plain functions of `policy.spam`, the daemon is
reached through `smtp.spamd.SpamdClient`.

One score per message, but one decision per recipient: the lists are per
mailbox, and after DATA SMTP can only accept or refuse the whole message.
So a message is refused (550 5.7.1) only when every recipient would refuse
it; when some would accept it, the others get it in their Junk folder
instead of a refusal (a message already accepted for one recipient is
never silently dropped for another).

spamd sees the message as it will be stored: with our `Received:` field on
top (so SpamAssassin knows the client's address and whether it logged in:
`ESMTPSA`) and without any `X-Spam-*` field the sender put there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from policy.spam import ListMatch, Verdict, outbound_refused, policy_list_decision, verdict
from smtp.headers import fields, split_message
from smtp.spamd import Score, SpamdUnavailable

log = logging.getLogger("smtp.spam")


class Decision(StrEnum):
    """The `spam` field of the mail log (and the `decision` label of the metrics)."""

    ham = "ham"  # scored below `junk`: INBOX
    junk = "junk"  # scored at or above `junk`: Junk folder
    reject = "reject"  # scored at or above `reject`: refused (550 5.7.1)
    allowed = "allowed"  # every recipient's allow list names the sender: INBOX, not scored
    blocked = "blocked"  # every recipient's block list names the sender: refused, not scored
    unscored = "unscored"  # spamd unavailable, policy "accept": INBOX with X-Spam-Status: Unscored
    tempfail = "tempfail"  # spamd unavailable, policy "tempfail": 451 4.7.1
    off = "off"  # no spamd configured (the server said so at start)
    outbound_ok = "outbound-ok"  # submitted, below `outbound_reject`
    outbound_refused = "outbound-refused"  # submitted, at or above `outbound_reject`: refused (Đ13.6)


@dataclass
class Outcome:
    decision: Decision
    score: Score | None = None
    # account id -> the Junk folder, for recipients that get the message there because of spam
    junk: dict[int, str] = field(default_factory=dict)
    lists: dict[int, ListMatch] = field(default_factory=dict)
    note: str = ""  # why unscored, or which list decided

    @property
    def refused(self) -> bool:
        return self.decision in (Decision.reject, Decision.blocked, Decision.outbound_refused)

    def log_fields(self) -> dict[str, Any]:
        """`spam`, `spam_score`, `spam_rules` of the mail log's accepted/rejected events."""
        out: dict[str, Any] = {"spam": self.decision.value}
        if self.score is not None:
            out["spam_score"] = round(self.score.score, 1)
            out["spam_rules"] = list(self.score.rules)
        if self.note:
            out["spam_note"] = self.note
        return out


# ---------------------------------------------------------------- header fields


def strip_spam_headers(message: bytes) -> bytes:
    """Remove every `X-Spam-*` field a sender wrote: only ours may say what the filter thought."""
    head, rest = split_message(message)
    kept = [raw for name, raw in fields(head) if not name.startswith(b"x-spam-")]
    if len(kept) == len(fields(head)):
        return message
    return b"\r\n".join(kept) + (b"\r\n" if kept else b"") + rest


def _fold(name: str, words: list[str], tail: Sequence[str] = ()) -> bytes:
    """One header field, folded before 78 columns (RFC 5322 §2.2.3): `words` are separated by spaces,
    `tail` items (the rule names) are packed with commas as SpamAssassin writes `tests=`."""
    lines: list[str] = []
    line = f"{name}:"
    pieces = [" " + w for w in words]
    if tail:
        items = [t + "," for t in tail[:-1]] + [tail[-1]]
        pieces += [" tests=" + items[0], *items[1:]]
    for piece in pieces:
        if len(line) + len(piece) > 78 and line != f"{name}:":
            lines.append(line)
            line = "\t" + piece.lstrip(" ")
        else:
            line += piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def spam_headers(outcome: Outcome, junk_threshold: float) -> bytes:
    """X-Spam-Flag (when spam), X-Spam-Score and X-Spam-Status in SpamAssassin's own style, so
    Thunderbird's "trust SpamAssassin headers" and Outlook rules work on them."""
    d = outcome.decision
    if d in (Decision.off, Decision.outbound_ok, Decision.outbound_refused, Decision.tempfail):
        return b""
    if d == Decision.unscored:
        return _fold("X-Spam-Status", ["Unscored,", *outcome.note.split()])
    if d == Decision.allowed:
        return _fold("X-Spam-Status", ["No,", "not", "scored:", *outcome.note.split()])
    if d == Decision.blocked or outcome.score is None:
        return b"X-Spam-Flag: YES\r\n" + _fold("X-Spam-Status", ["Yes,", *outcome.note.split()])
    s = outcome.score
    spam = s.score >= junk_threshold
    status = _fold("X-Spam-Status", [f"{'Yes' if spam else 'No'},", f"score={s.score:.1f}",
                                     f"required={junk_threshold:.1f}"], list(s.rules) or ["none"])
    flag = b"X-Spam-Flag: YES\r\n" if spam else b""
    return flag + f"X-Spam-Score: {s.score:.1f}\r\n".encode() + status


# ---------------------------------------------------------------- scoring


def spamd_input(message: bytes, limit: int, received: bytes = b"") -> bytes:
    """What spamd is given, the same for scoring on SMTP, for learning from IMAP moves and for
    `mailserver spam check|learn`: without any `X-Spam-*` field (a sender's, or our own verdict on a
    stored message) and cut at `spam.max_scan_size`. Different inputs would make `spam check` of a
    saved message disagree with what the server decided."""
    data = received + strip_spam_headers(message)
    return data[:limit] if len(data) > limit else data


async def _score(svc: Any, message: bytes, received: bytes) -> Score:
    return await svc.spamd.score(spamd_input(message, svc.policy.spam.max_scan_size, received))


def _senders(envelope_sender: str, from_addresses: list[str]) -> list[str]:
    return [a for a in [envelope_sender, *from_addresses] if a]


async def inbound(svc: Any, message: bytes, received: bytes, accounts: list[Any], envelope_sender: str,
                  from_addresses: list[str], trusted: bool) -> Outcome:
    """The MX decision for `message` addressed to `accounts` (the resolved recipients).

    `trusted`: SPF and DMARC did not fail, so allow-list entries may be honoured.
    """
    policy = svc.policy.spam
    junk_folder = svc.policy.folders.junk
    senders = _senders(envelope_sender, from_addresses)
    lists = {a.id: m for a in accounts
             if (m := policy_list_decision(policy, a.address, senders, allow_trusted=trusted)) is not None}
    actions = {m.action for m in lists.values()}
    if len(lists) == len(accounts) and accounts and len(actions) == 1:
        first = next(iter(lists.values()))
        decision = Decision.blocked if first.action == "block" else Decision.allowed
        return Outcome(decision, lists=lists, note=first.describe())
    if not svc.spamd.configured:
        return _per_recipient(Outcome(Decision.off, lists=lists), accounts, None, junk_folder)
    try:
        score = await _score(svc, message, received)
    except SpamdUnavailable as e:
        log.error("spam scoring failed: %s", e)
        decision = Decision.tempfail if policy.on_spamd_error == "tempfail" else Decision.unscored
        return _per_recipient(Outcome(decision, lists=lists, note="spamd unavailable"), accounts, None, junk_folder)
    v = verdict(score.score, policy.junk, policy.reject)
    decision = {Verdict.ham: Decision.ham, Verdict.junk: Decision.junk, Verdict.reject: Decision.reject}[v]
    return _per_recipient(Outcome(decision, score=score, lists=lists), accounts, v, junk_folder)


def _per_recipient(outcome: Outcome, accounts: list[Any], v: Verdict | None, junk_folder: str) -> Outcome:
    """Each recipient's folder from its list match and the verdict; refused only if all refuse.
    Without local recipients (an alias forwarding elsewhere) the verdict alone decides."""
    if not accounts:
        return outcome
    refuse: set[int] = set()
    for a in accounts:
        match = outcome.lists.get(a.id)
        if match is not None and match.action == "allow":
            continue
        if (match is not None and match.action == "block") or v == Verdict.reject:
            refuse.add(a.id)
        elif v == Verdict.junk:
            outcome.junk[a.id] = junk_folder
    if len(refuse) == len(accounts):
        if v != Verdict.reject:
            outcome.decision = Decision.blocked
            outcome.note = next(iter(outcome.lists.values())).describe()
        return outcome
    for aid in refuse:
        outcome.junk[aid] = junk_folder  # others take it: these get it as junk rather than not at all
    if outcome.decision == Decision.reject:
        outcome.decision = Decision.junk
    return outcome


async def outbound(svc: Any, message: bytes, received: bytes) -> Outcome:
    """Đ13.6: submitted mail is scored too; at or above `outbound_reject` it does not leave."""
    policy = svc.policy.spam
    if not svc.spamd.configured:
        return Outcome(Decision.off)
    try:
        score = await _score(svc, message, received)
    except SpamdUnavailable as e:
        log.error("spam scoring of submitted mail failed: %s", e)
        decision = Decision.tempfail if policy.on_spamd_error == "tempfail" else Decision.unscored
        return Outcome(decision, note="spamd unavailable")
    if outbound_refused(score.score, policy.outbound_reject):
        return Outcome(Decision.outbound_refused, score=score)
    return Outcome(Decision.outbound_ok, score=score)
