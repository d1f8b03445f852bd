"""Byte-level I/O of one client connection, and assembling whole commands.

A plain `asyncio.Protocol` rather than streams, for three reasons: STARTTLS
must be able to throw away plaintext the client pipelined after the command
(RFC 3501 §11.1; streams hide their buffer), the TLS layer under it is our
small-buffer one (`tls.py`), and an idle connection should cost as little
as possible (a bytearray and a few attributes).

`read_command` turns the wire form into one bytes object the parser walks,
handling synchronising literals (`{n}`: we answer `+` first, RFC 3501
§7.5) and non-synchronising ones (`{n+}`, RFC 7888 LITERAL+), and enforces
the maximum command size: 64 KiB for ordinary commands, APPENDLIMIT for the
message of an APPEND.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from imap_gateway import texts, tls

log = logging.getLogger("imap")

MAX_LINE = 64 * 1024  # also the budget of a whole non-APPEND command, literals included
READ_HIGH_WATER = 256 * 1024  # pause the socket when this much unread input is buffered
LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\r?\n\Z")
APPEND_START = re.compile(rb"[^ ]+ +APPEND ", re.IGNORECASE)


class Closed(Exception):
    """The client went away (or we closed the connection)."""


class LineTooLong(Exception):
    """`head` is the start of the discarded line, so the BAD can carry the client's tag."""

    def __init__(self, head: bytes = b"") -> None:
        super().__init__("line too long")
        self.head = head


@dataclass
class Rejected(Exception):
    """A command abandoned while it was being read; `response` goes to the client as is."""

    response: bytes
    fatal: bool = False


class Connection(asyncio.Protocol):
    def __init__(self, on_open: Callable[[Connection], Awaitable[None]]) -> None:
        self._on_open = on_open
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._want = 0  # bytes a pending read needs (a literal may exceed the high-water mark)
        self.interrupted = False  # set by interrupt(): IDLE has news to send
        self.peer_ip = ""
        self.local_ip = ""
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer_ip, self.local_ip = str(peer[0]), str(local[0])
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._on_open(self)
        except Exception:
            log.exception("IMAP connection from %s failed", self.peer_ip)
        finally:
            self.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > max(READ_HIGH_WATER, self._want) and not self._read_paused and self.transport:
            self.transport.pause_reading()
            self._read_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.transport = None
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------ reading

    @property
    def is_tls(self) -> bool:
        return self.transport is not None and self.transport.get_extra_info("ssl_object") is not None

    async def _more(self) -> None:
        if self.eof:
            raise Closed()
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def wait_readable(self) -> None:
        """Return when input, EOF or an interrupt() arrives: IDLE waits here for the client or the store."""
        while not self.buf and not self.eof and not self.interrupted:
            await self._more()
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        self._wake()

    async def readline(self, limit: int = MAX_LINE) -> bytes:
        """One line with its LF (CRLF normally); LineTooLong after discarding the rest of it."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                if i + 1 > limit:
                    head = bytes(self.buf[:64])
                    del self.buf[: i + 1]
                    raise LineTooLong(head)
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                head = bytes(self.buf[:64])
                await self._discard_line()
                raise LineTooLong(head)
            start = len(self.buf)
            await self._more()

    async def _discard_line(self) -> None:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                del self.buf[: i + 1]
                return
            self.buf.clear()
            await self._more()

    async def readexactly(self, n: int) -> bytes:
        self._want = n
        try:
            while len(self.buf) < n:
                await self._more()
        finally:
            self._want = 0
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def discard(self, n: int) -> None:
        """Skip `n` bytes of a non-synchronising literal we refused."""
        while n > 0:
            if not self.buf:
                await self._more()
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k

    # ------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.transport is None:
            raise Closed()
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
            if self.transport is None:
                raise Closed()

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        """STARTTLS: plaintext pipelined after the command is dropped, never executed."""
        assert self.transport is not None
        self.buf.clear()
        self.transport = await tls.start_tls(self.transport, self, ctx)

    def quick_ack(self) -> None:
        """Acknowledge the client's next segment at once (Linux TCP_QUICKACK).

        After our "+" a client such as imaplib writes the literal and its
        final CRLF separately; Nagle's algorithm holds the CRLF until the
        literal is acknowledged, and Linux delays that acknowledgement up to
        40 ms. Every synchronising literal (a Vietnamese SEARCH, an APPEND)
        cost those 40 ms before this.
        """
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# ---------------------------------------------------------------- whole commands


LiteralCheck = Callable[[bytes, int, bool], Awaitable[bytes | None]]


async def read_command(
    conn: Connection,
    *,
    append_limit: int,
    check_literal: LiteralCheck | None = None,
    max_command: int = MAX_LINE,
) -> bytes:
    """Read one command, literals included, without its final CRLF.

    `check_literal(first_line, size, synchronising)` may refuse a literal
    before we send `+` (an APPEND over quota or over APPENDLIMIT, RFC 3501
    §7.5 and RFC 7889) by returning the tagged response to send instead.
    """
    parts: list[bytes] = []
    total = 0
    first_line = b""
    while True:
        try:
            line = await conn.readline(min(MAX_LINE, max(max_command - total, 2)))
        except LineTooLong as e:
            raise Rejected(_bad(first_line or e.head, "command line too long")) from None
        if not first_line:
            first_line = line
        m = LITERAL_AT_END.search(line)
        if m is None:
            parts.append(line[:-2] if line.endswith(b"\r\n") else line[:-1])
            return b"".join(parts)
        size = int(m.group(2))
        sync = not m.group(3)
        is_append = APPEND_START.match(first_line) is not None
        # The command's own check first (APPEND before login is BAD, over quota is NO), then the size.
        refusal = await check_literal(first_line, size, sync) if check_literal is not None else None
        limit = append_limit if is_append else max_command - total - len(line)
        if refusal is None and size > limit:
            refusal = (
                _tagged(first_line, f"NO [TOOBIG] {texts.TOOBIG}".encode())
                if is_append else _bad(first_line, "literal too large for this command")
            )
        if refusal is not None:
            if sync:
                # The client waits for "+" and sends nothing more of this command.
                raise Rejected(refusal)
            if size > append_limit * 2 + MAX_LINE:
                raise Rejected(f"* BYE {texts.LITERAL_TOO_BIG}\r\n".encode(), fatal=True)
            # LITERAL+ (RFC 7888 §4): the data is on its way; swallow it and the rest of the command.
            await conn.discard(size)
            try:
                await _discard_rest_of_command(conn, append_limit)
            except LineTooLong:
                pass
            raise Rejected(refusal)
        if sync:
            conn.write(b"+ Ready for literal data\r\n")
            conn.quick_ack()
        parts.append(line if line.endswith(b"\r\n") else line[:-1] + b"\r\n")
        parts.append(await conn.readexactly(size))
        total += len(line) + size


async def _discard_rest_of_command(conn: Connection, limit: int) -> None:
    while True:
        line = await conn.readline()
        m = LITERAL_AT_END.search(line)
        if m is None:
            return
        size = int(m.group(2))
        if not m.group(3) or size > limit:
            return
        await conn.discard(size)


def _tag_of(line: bytes) -> bytes:
    tag = line.split(b" ", 1)[0].strip()
    if not tag or any(c not in _TAG_BYTES for c in tag):
        return b"*"
    return tag


_TAG_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'-./:;<=>?@^_`|~,")


def _tagged(line: bytes, text: bytes) -> bytes:
    return _tag_of(line) + b" " + text + b"\r\n"


def _bad(line: bytes, reason: str) -> bytes:
    return _tagged(line, b"BAD " + reason.encode())
