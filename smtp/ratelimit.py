"""Đ6.2.b sending limits per account: messages and recipients per window, and burst detection.

A compromised account shows as a sudden burst of outbound mail. Each
account may send `messages_per_window` messages to `recipients_per_window`
recipients per sliding window (policy, or a grant in the directory for a
unit's clerk); beyond that MAIL or RCPT gets 451 4.7.1 and a legitimate
client simply retries later. Refusals are counted too: `hold_after_refusals`
of them inside one window is a sustained burst, and the caller puts the
account's outbound mail on hold.

Counters live in this process's memory (a restart forgets them, which only
ever lets an account send a little more); the hold itself is stored in the
directory, so it survives restarts and is seen by every worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Window:
    sent: deque[tuple[float, int]] = field(default_factory=deque)  # (time, recipients)
    refused: deque[float] = field(default_factory=deque)


@dataclass(frozen=True)
class Usage:
    messages: int
    recipients: int


class SendRateLimiter:
    def __init__(self, window_seconds: float, hold_after_refusals: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.hold_after = hold_after_refusals
        self.clock = clock
        self._accounts: dict[int, _Window] = {}

    def _get(self, account_id: int) -> _Window:
        w = self._accounts.setdefault(account_id, _Window())
        horizon = self.clock() - self.window
        while w.sent and w.sent[0][0] < horizon:
            w.sent.popleft()
        while w.refused and w.refused[0] < horizon:
            w.refused.popleft()
        return w

    def usage(self, account_id: int) -> Usage:
        w = self._get(account_id)
        return Usage(len(w.sent), sum(n for _, n in w.sent))

    def record_sent(self, account_id: int, recipients: int) -> None:
        self._get(account_id).sent.append((self.clock(), recipients))

    def record_refusal(self, account_id: int) -> bool:
        """Count a refusal; True when this one makes the burst sustained (hold the account)."""
        w = self._get(account_id)
        w.refused.append(self.clock())
        return len(w.refused) == self.hold_after

    def retry_after(self, account_id: int) -> int:
        """Seconds until the oldest message leaves the window (for the refusal text)."""
        w = self._get(account_id)
        if not w.sent:
            return 0
        return max(1, int(w.sent[0][0] + self.window - self.clock()) + 1)
