"""Change notifications: IMAP IDLE and NOTIFY in this process, and in every other worker process.

In this process, every committed change of an account is handed to the
listeners of that account (`MailStore.subscribe`) right after the commit,
in commit order.

Across processes the index is the channel. Every write transaction also
appends its events to the account index's `changes` table, tagged with the
writing store's origin token. Each process runs one watcher task that,
twice a second, looks at the accounts it has listeners for: a `stat` of the
index's WAL file (and of the INBOX's `new/`, where other programs deliver)
says whether anything happened; only then does it read the `changes` rows
after the last one it saw, skip its own, and publish the rest as the same
`Event` values. So a second worker, or the CLI, changing a mailbox wakes
the IDLE sessions of the first within about half a second, at the cost of
two `stat` calls per watched account per tick when nothing happens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from storage.storetypes import Event

log = logging.getLogger("storage.events")

Listener = Callable[[Event], Any]


def event_json(e: Event) -> str:
    o: dict[str, Any] = {"k": e.kind, "f": e.folder, "m": e.modseq}
    if e.uids:
        o["u"] = list(e.uids)
    if e.old_name is not None:
        o["o"] = e.old_name
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def event_from_json(text: str, account_id: int) -> Event:
    o = json.loads(text)
    return Event(o["k"], o["f"], tuple(o.get("u", ())), o.get("m", 0), o.get("o"), account_id)


class Notifier:
    """Listeners per account id; a failing listener is logged and does not stop the others."""

    def __init__(self) -> None:
        self._listeners: dict[int, list[Listener]] = {}

    def subscribe(self, account_id: int, listener: Listener) -> None:
        self._listeners.setdefault(account_id, []).append(listener)

    def unsubscribe(self, account_id: int, listener: Listener) -> None:
        items = self._listeners.get(account_id, [])
        if listener in items:
            items.remove(listener)
        if not items:
            self._listeners.pop(account_id, None)

    def watched(self) -> list[int]:
        return list(self._listeners)

    def publish(self, events: list[Event]) -> None:
        for event in events:
            for listener in list(self._listeners.get(event.account_id, ())):
                try:
                    listener(event)
                except Exception:
                    log.exception("change listener failed for %s", event)
