"""One client's IMAP session: the state machine, the command loop, and untagged updates.

The loop reads one whole command (`conn.read_command`), parses its tag and
name, checks the state (RFC 3501 §3), runs the handler, sends the untagged
updates the RFC allows at that moment, then the tagged reply. Commands from
one client run one after another; a pipelining client is still served in
order because we only read the next command after answering this one.

What the session knows about the selected folder, and how changes made by
other sessions reach it, is in `selected.py`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from imap_gateway import capability, texts
from imap_gateway.commands import COMMANDS, LITERAL_CHECKS, State
from imap_gateway.conn import MAX_LINE, Closed, Connection, Rejected, read_command
from imap_gateway.parse import ParseError, Parser
from imap_gateway.responses import REPLIED, No, Ok, line, refusal
from policy.errors import MailserverError

if TYPE_CHECKING:
    from imap_gateway.selected import Selected
    from imap_gateway.server import ImapServer
    from storage.records import Account

log = logging.getLogger("imap")

PREAUTH_TIMEOUT = 180.0  # seconds a client may stay connected without logging in
# RFC 3501 §5.4: an inactivity autologout timer must be at least 30 minutes.
AUTOLOGOUT = 31 * 60.0
PREAUTH_MAX_COMMAND = 8 * 1024  # an anonymous client gets no large literals
MAX_BAD_IN_A_ROW = 20  # then the peer is not an IMAP client (or is broken): hang up
OUTPUT_CHUNK = 64 * 1024


class Session:
    def __init__(self, server: ImapServer, conn: Connection) -> None:
        self.server = server
        self.conn = conn
        self.state = State.not_authenticated
        self.account: Account | None = None
        self.mbox: Any = None  # the store's per-account session
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.bad_in_a_row = 0
        self.idling = False
        self.busy = False  # a command is executing (SIGTERM lets it finish; see ImapServer.drain)
        self._said_bye = False
        self._out: list[bytes] = []
        self._out_size = 0
        self.client_id: dict[str, str] = {}

    # ------------------------------------------------------------ flags of the session

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled

    @property
    def condstore(self) -> bool:
        """RFC 7162 §3.1: enabled by ENABLE or by the first command that uses a mod-sequence."""
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def login_allowed(self) -> bool:
        """LOGINDISABLED until TLS (RFC 3501 §6.2.3), unless the loopback dev listener allows plaintext."""
        return self.conn.is_tls or self.server.allow_plaintext_login

    def capabilities(self) -> str:
        return " ".join(capability.for_session(self))

    # ------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= OUTPUT_CHUNK:
            self.flush()

    def untagged(self, text: str) -> None:
        self.send(b"* " + text.encode("utf-8") + b"\r\n")

    def flush(self) -> None:
        if self._out:
            self.conn.write(b"".join(self._out))
            self._out.clear()
            self._out_size = 0

    async def drain(self) -> None:
        self.flush()
        await self.conn.drain()

    # ------------------------------------------------------------ the loop

    def timeout(self) -> float:
        return PREAUTH_TIMEOUT if self.state == State.not_authenticated else AUTOLOGOUT

    async def run(self) -> None:
        host = self.server.hostname
        self.untagged(f"OK [CAPABILITY {self.capabilities()}] {host} IMAP4rev1 {texts.GREETING}")
        try:
            while self.state != State.logout:
                await self.drain()
                try:
                    async with asyncio.timeout(self.timeout()):
                        raw = await read_command(
                            self.conn,
                            append_limit=self.server.append_limit if self.state != State.not_authenticated else 0,
                            check_literal=self.check_literal,
                            max_command=PREAUTH_MAX_COMMAND if self.state == State.not_authenticated else MAX_LINE,
                        )
                except TimeoutError:
                    self.untagged(f"BYE {texts.IDLE_TIMEOUT}")
                    break
                except Rejected as r:
                    self.send(r.response)
                    self._counted(bad=b" BAD " in r.response[:64])
                    if r.fatal:
                        break
                    continue
                self.busy = True
                try:
                    await self.execute(raw)
                finally:
                    self.busy = False
                if self.server.draining:
                    self.shutdown()  # the server is stopping: this command was the last
            await self.drain()
        except (Closed, ConnectionError):
            pass
        finally:
            self.flush()
            await self.close()

    def _counted(self, bad: bool) -> None:
        """Too many bad commands in a row: not an IMAP client (or a broken one); it gets BYE."""
        self.bad_in_a_row = self.bad_in_a_row + 1 if bad else 0
        if self.bad_in_a_row >= MAX_BAD_IN_A_ROW:
            self.untagged(f"BYE {texts.TOO_MANY_BAD}")
            self.state = State.logout

    async def execute(self, raw: bytes) -> None:
        p = Parser(raw, utf8=self.utf8)
        tag = "*"
        try:
            tag = p.tag()
            p.sp()
            name = p.word("a command name")
            if name == "UID":
                p.sp()
                name = "UID " + p.word("a command after UID")
        except ParseError as e:
            self._reply(tag, "BAD", str(e))
            return
        cmd = COMMANDS.get(name)
        if cmd is None:
            self._reply(tag, "BAD", f"unknown command {name}")
            return
        if self.state not in cmd.states:
            where = {State.not_authenticated: "before login", State.authenticated: "without a selected folder",
                     State.selected: "with a folder selected"}[self.state]
            self._reply(tag, "BAD", f"{name} is not allowed {where}")
            return
        try:
            result = await cmd.handler(self, tag, p)
        except ParseError as e:
            self._reply(tag, "BAD", f"{name}: {e}")
            return
        except (No, MailserverError) as e:
            no = e if isinstance(e, No) else refusal(e)
            await self.sync_updates(cmd.expunge_ok)
            self._reply(tag, no.status, no.text, no.code)
            return
        except (Closed, ConnectionError):
            raise
        except Exception:
            log.exception("IMAP %s failed for %s", name, self.account.address if self.account else self.conn.peer_ip)
            self._reply(tag, "NO", texts.both("internal server error; the operators have been notified",
                                              "lỗi máy chủ; quản trị viên đã được thông báo"), "SERVERBUG")
            return
        if result is REPLIED:
            return
        if self.state == State.logout:
            self._reply(tag, "OK", "LOGOUT completed")
            return
        await self.sync_updates(cmd.expunge_ok)
        ok = result if isinstance(result, Ok) else Ok(result or f"{name} completed")
        self._reply(tag, "OK", ok.text, ok.code)

    def _reply(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        self.send(line(tag, status, text, code))
        self._counted(bad=status == "BAD")

    # ------------------------------------------------------------ hooks for other modules

    async def check_literal(self, first_line: bytes, size: int, sync: bool) -> bytes | None:
        """Let the command refuse a literal before its data is sent (APPEND over quota)."""
        words = first_line.split(b" ", 2)
        check = LITERAL_CHECKS.get(words[1].decode("ascii", "replace").upper()) if len(words) > 2 else None
        return None if check is None else await check(self, first_line, size)

    async def sync_updates(self, expunge_ok: bool) -> None:
        """Untagged EXISTS/EXPUNGE/FETCH for changes other sessions made (see selected.py).

        A failure here must not cost the client the reply to a command that
        succeeded: it is logged and the folder stays marked, so the next
        command tries again.
        """
        sel = self.selected
        if sel is None:
            return
        try:
            await sel.sync(self, expunge_ok)
        except MailserverError as e:
            if getattr(e, "field", None) != "folder":
                log.warning("IMAP update of %s failed: %s", sel.folder, e)
                sel.dirty = True
                return
            # Another session deleted the folder we have selected: nothing valid is left to show.
            self.untagged("BYE " + texts.both("the selected folder was deleted", "thư mục đang mở đã bị xóa"))
            self.state = State.logout
        except (Closed, ConnectionError):
            raise
        except Exception:
            log.exception("IMAP update of %s failed", sel.folder)
            sel.dirty = True

    def on_store_event(self, event: Any) -> None:
        """The store's doorbell (called for every change in this account): mark, and wake IDLE."""
        sel = self.selected
        if sel is None:
            return
        if event.kind == "folder-renamed" and getattr(event, "old_name", None) == sel.folder:
            sel.folder = event.folder
        elif event.folder != sel.folder:
            return
        sel.dirty = True
        if self.idling:
            self.conn.interrupt()

    def shutdown(self) -> None:
        """The server is stopping: BYE (RFC 3501 §7.1.5) and close, between commands or during IDLE."""
        if self._said_bye:
            return
        self._said_bye = True
        self.untagged("BYE " + texts.SHUTDOWN)
        self.flush()
        self.conn.close()
        self.state = State.logout

    async def close(self) -> None:
        self.state = State.logout
        if self.account is not None:
            self.server.forget(self)
        if self.mbox is not None:
            closer = getattr(self.mbox, "close", None)
            if closer is not None:
                try:
                    result = closer()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("closing the store session failed")
            self.mbox = None
