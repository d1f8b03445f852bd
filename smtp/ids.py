"""Queue ids: the id in `250 ... queued as <id>`, in `Received:`, in the mail log and in `mailserver queue`.

One id follows a message from MAIL FROM to its last delivery attempt, so an
operator can find every line about it with `mailserver log search --queue-id`.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ0123456789"


def new_queue_id() -> str:
    """Short, sortable by time, unique enough to find one message in the log (letters and digits only:
    it also names the queue's message file)."""
    t = int(time.time() * 1000)
    head = ""
    while t:
        t, r = divmod(t, len(_ALPHABET))
        head = _ALPHABET[r] + head
    return head + "".join(secrets.choice(_ALPHABET) for _ in range(6))
