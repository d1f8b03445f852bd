"""Đ7.3.b size arithmetic: attachments, the message size limit, quotas.

The regulation limits attachments (15 MB per message), but SMTP can only
announce a limit on the whole encoded message (SIZE). Base64 turns 3 bytes
into 4 and adds a CRLF every 76 characters, so 15 MiB of attachments travel as
about 20.5 MiB; the advertised limit adds room for the text and headers. The
decoded attachment total is then checked separately after DATA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policy.model import AttachmentPolicy, QuotaPolicy

BASE64_LINE = 76  # RFC 2045 §6.8


def base64_size(n: int) -> int:
    """Bytes `n` bytes take once base64-encoded in 76-character CRLF lines."""
    encoded = 4 * math.ceil(n / 3)
    return encoded + 2 * math.ceil(encoded / BASE64_LINE)


def message_size_limit(rules: AttachmentPolicy) -> int:
    """The SMTP SIZE and IMAP APPENDLIMIT derived from the attachment limit."""
    if rules.message_size_limit is not None:
        return rules.message_size_limit
    return base64_size(rules.max_total) + rules.message_overhead


def attachments_fit(total_decoded: int, rules: AttachmentPolicy) -> bool:
    return total_decoded <= rules.max_total


def effective_quota(account_quota: int | None, unit_quota: int | None, rules: QuotaPolicy) -> int:
    """The account's own quota, else its unit's default, else the policy default (Đ7.3.a)."""
    if account_quota is not None:
        return account_quota
    if unit_quota is not None:
        return unit_quota
    return rules.default


def quota_floor_ok(quota: int, rules: QuotaPolicy) -> bool:
    """Đ7.3.b "tối thiểu 02GB": no mailbox may be given less than the default."""
    return quota >= rules.default


def percent_of(used: int, quota: int) -> float:
    """Usage as a percentage of the quota; a zero quota counts as full."""
    return 100.0 * used / quota if quota else 100.0


@dataclass(frozen=True)
class QuotaCheck:
    fits: bool
    used: int
    quota: int
    incoming: int

    @property
    def percent(self) -> float:
        return percent_of(self.used, self.quota)


def check_quota(used: int, quota: int, incoming: int) -> QuotaCheck:
    """Would `incoming` more bytes fit? A mailbox exactly full still fits."""
    return QuotaCheck(fits=used + incoming <= quota, used=used, quota=quota, incoming=incoming)


def crossed_thresholds(before: int, after: int, quota: int, rules: QuotaPolicy) -> list[int]:
    """Thresholds (percent) that usage crossed upward between `before` and `after` (Đ7.3.c)."""
    if quota <= 0:
        return []
    return [p for p in rules.warn_percent if before * 100 < p * quota <= after * 100]


def thresholds_reached(used: int, quota: int, rules: QuotaPolicy) -> list[int]:
    """Every threshold at or below current usage."""
    if quota <= 0:
        return list(rules.warn_percent)
    return [p for p in rules.warn_percent if p * quota <= used * 100]
