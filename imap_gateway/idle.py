"""IDLE (RFC 2177): push new mail, flag changes and expunges while the client waits.

The session sleeps on its connection; the store's change listener wakes it
(`Connection.interrupt`), and it then reports exactly what changed
(selected.py). Every `KEEPALIVE` seconds it also looks for changes made by
another worker process and sends `* OK` so NAT boxes between an office and
the server do not drop the quiet connection. Thunderbird re-issues IDLE
every 29 minutes; a client that never does is logged out after the RFC 3501
§5.4 autologout time.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from imap_gateway import texts
from imap_gateway.commands import AUTH, command
from imap_gateway.conn import LineTooLong
from imap_gateway.parse import Parser
from imap_gateway.responses import No

if TYPE_CHECKING:
    from imap_gateway.session import Session

KEEPALIVE = 120.0


@command("IDLE", AUTH)
async def cmd_idle(s: Session, tag: str, p: Parser) -> str:
    from imap_gateway.session import AUTOLOGOUT  # one autologout time for the whole session

    p.end()
    s.send(b"+ idling\r\n")
    deadline = time.monotonic() + AUTOLOGOUT
    s.idling = True
    try:
        while True:
            await s.sync_updates(expunge_ok=True)
            await s.drain()
            if s.conn.buf or s.conn.eof:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                s.untagged(f"BYE {texts.IDLE_TIMEOUT}")
                s.state = s.state.logout
                return "IDLE terminated"
            try:
                async with asyncio.timeout(min(KEEPALIVE, remaining)):
                    await s.conn.wait_readable()
            except TimeoutError:
                s.untagged("OK still here")
                if s.selected is not None:
                    s.selected.dirty = True  # a change made by another worker process has no doorbell here
    finally:
        s.idling = False
    try:
        done = await s.conn.readline(1024)
    except LineTooLong:
        raise No(None, "expected DONE", status="BAD") from None
    if done.strip().upper() != b"DONE":
        raise No(None, "expected DONE to end IDLE", status="BAD")
    return "IDLE terminated"
