"""Đ8.2.b, Đ13.6 spam rules as plain functions: thresholds and the allow and block lists.

SpamAssassin (spamd) gives a score; what the province does with it is
decided here, from `policy.yaml`, so every rule can be tested with numbers
and addresses and no daemon:

* inbound (the MX): at or above `junk` the message goes to the recipient's
  Junk folder, at or above `reject` it is refused at DATA (550 5.7.1);
* outbound (submission, Đ13.6 "không phát tán thư rác"): at or above
  `outbound_reject` it is refused, and the refusal counts toward the Đ6.2.b
  hold of a compromised account;
* lists, per recipient: keys name whom a list protects (`*` every mailbox,
  a served domain, or one mailbox address), entries name senders (an
  address, or a domain that also covers its subdomains). The most specific
  key that matches decides; at one level a block beats an allow.

"At or above" follows SpamAssassin's own `required_score` (a message is spam
when its score is >= the threshold), so `spamassassin --report` and this
module agree on what 5.0 means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from policy.model import SpamPolicy

EVERYONE = "*"


class Verdict(StrEnum):
    """What the score alone says about a received message."""

    ham = "ham"
    junk = "junk"
    reject = "reject"


def verdict(score: float, junk: float, reject: float) -> Verdict:
    """Inbound: the folder or the refusal a score earns (thresholds inclusive, as SpamAssassin's)."""
    if score >= reject:
        return Verdict.reject
    if score >= junk:
        return Verdict.junk
    return Verdict.ham


def outbound_refused(score: float, threshold: float) -> bool:
    """Đ13.6: submitted mail scoring at or above the outbound threshold does not leave."""
    return score >= threshold


# ---------------------------------------------------------------- allow and block lists


def normalise_sender_entry(entry: str) -> str:
    """`User@Example.ORG` → `user@example.org`; `@example.org`, `*.example.org`, `example.org.` →
    `example.org`. Raises ValueError naming what is wrong (the loader adds file, line and key)."""
    e = entry.strip().lower().rstrip(".")
    if e.startswith("*."):
        e = e[2:]
    if e.startswith("@"):
        e = e[1:]
        if "@" in e:
            raise ValueError(f'"{entry}" is neither an address (user@example.org) nor a domain (example.org)')
    local, at, domain = e.rpartition("@")
    if at and (not local or "@" in local or any(c.isspace() for c in local)):
        raise ValueError(f'"{entry}" is not an address (user@example.org)')
    if not domain or "." not in domain or any(c.isspace() or c in "@,;<>" for c in domain):
        raise ValueError(f'"{entry}" is neither an address (user@example.org) nor a domain (example.org)')
    return e


def normalise_list_key(key: str) -> str:
    """Whom a list protects: `*`, a domain (`phuyen.gov.vn`) or one mailbox (`nguyenvana@phuyen.gov.vn`)."""
    k = key.strip().lower().rstrip(".")
    if k == EVERYONE:
        return k
    return normalise_sender_entry(k)


def sender_matches(entry: str, sender: str) -> bool:
    """An address entry matches that address; a domain entry matches the domain and its subdomains."""
    s = sender.strip().strip("<>").lower().rstrip(".")
    if not s or "@" not in s:
        return False
    if "@" in entry:
        return s == entry
    domain = s.rpartition("@")[2]
    return domain == entry or domain.endswith("." + entry)


@dataclass(frozen=True)
class ListMatch:
    """Which list decided, for the mail log and the X-Spam-Status header."""

    action: Literal["allow", "block"]
    scope: str  # the key that matched: "*", a domain or a mailbox
    entry: str  # the sender entry that matched

    def describe(self) -> str:
        return f"{self.action} list of {self.scope}: {self.entry}"


def scopes_of(mailbox: str) -> list[str]:
    """The keys that can apply to `mailbox`, most specific first."""
    m = mailbox.lower()
    return [m, m.rpartition("@")[2], EVERYONE]


def list_decision(allow: Mapping[str, Sequence[str]], block: Mapping[str, Sequence[str]], mailbox: str,
                  senders: Iterable[str], *, allow_trusted: bool = True) -> ListMatch | None:
    """The list decision for one recipient mailbox, or None when no list names the sender.

    `senders` are the envelope sender and the From: addresses. `allow_trusted=False` (the sender's
    SPF or DMARC failed) ignores allow entries: a forged sender must not walk past the filter.
    """
    wanted = [s for s in senders if s]
    if not wanted:
        return None
    for scope in scopes_of(mailbox):
        for action, lists in (("block", block), ("allow", allow)):
            if action == "allow" and not allow_trusted:
                continue
            for entry in lists.get(scope, ()):
                if any(sender_matches(entry, s) for s in wanted):
                    return ListMatch(action, scope, entry)  # type: ignore[arg-type]
    return None


def policy_list_decision(policy: SpamPolicy, mailbox: str, senders: Iterable[str], *,
                         allow_trusted: bool = True) -> ListMatch | None:
    """`list_decision` with the lists of `policy.yaml`."""
    return list_decision(policy.allow, policy.block, mailbox, senders, allow_trusted=allow_trusted)
