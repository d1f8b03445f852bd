"""An IMAP client for reading a unit's old server (Đ8.2.d), built on aioimaplib 2.0.3.

aioimaplib gives the connection, tags, the command bookkeeping and the
literal reader. What a migration needs and 2.0.3 lacks is added here,
around it rather than in a fork:

* STARTTLS (RFC 3501 §6.2.1): the command, then asyncio's `start_tls` on
  the same transport, then CAPABILITY again (the list before TLS must not be
  trusted, RFC 3501 §6.2.1).
* AUTHENTICATE PLAIN (RFC 4616) with an authorization identity, so an
  operator can log in as a master user (Dovecot `master = yes`, Zimbra
  admin) for a mailbox whose password nobody has: `authzid` = the user,
  `authcid` = the administrator. With SASL-IR (RFC 4959) the response goes
  on the command line, otherwise after the server's `+`.
* EXAMINE that keeps its untagged data (UIDVALIDITY, UIDNEXT, EXISTS) and
  moves to the selected state read-only (RFC 3501 §6.3.2), so reading never
  changes \\Seen or \\Recent on the old server.
* The response reader: 2.0.3 recurses once per line (a read holding more
  than ~1,000 short lines, e.g. the flags of a big folder, raises
  RecursionError inside `data_received` and the connection dies) and copies
  the rest of the buffer for every line. It is replaced by a loop over
  offsets. Its FETCH completion check rescans every line received so far for
  each new line (quadratic in the folder size); a running parenthesis count
  replaces it.
* A lost connection fails the waiting commands at once instead of leaving
  them to their timeout.
* Parsers for LIST (RFC 3501 §7.2.2, RFC 6154 attributes) and FETCH items
  (UID, FLAGS, INTERNALDATE, RFC822.SIZE, BODY[] as literals).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aioimaplib import aioimaplib as aio

from policy.errors import MailserverError
from storage import mutf7

CRLF = b"\r\n"
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}$")
_FETCH_START = re.compile(rb"(\d+) FETCH \(")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")


class SourceError(MailserverError):
    """The old server refused something or went away; `field` names what (login, folder, fetch ...)."""


# ------------------------------------------------------------------ the protocol, fixed and extended


class _Fetch(aio.FetchCommand):
    """FETCH whose completion check is a running parenthesis count over the current item."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._depth = 0

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if type(line) is bytes:  # literal data arrives as bytearray and is not syntax
            if _FETCH_START.match(line):
                self._depth = 0
            self._depth += line.count(b"(") - line.count(b")")

    def wait_data(self) -> bool:
        return self._depth > 0


class _Protocol(aio.IMAP4ClientProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sasl_response: bytes | None = None
        self.lost: Exception | None = None

    def _handle_responses(self, data: bytes, line_handler: Callable[..., Any],
                          current_cmd: aio.Command | None = None) -> None:
        """aioimaplib's reader as a loop over offsets (see the module docstring)."""
        pos, end = 0, len(data)
        cmd = current_cmd
        while True:
            if pos >= end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if cmd is not None and cmd.wait_data():
                    raise aio.IncompleteRead(cmd)
                return
            if cmd is not None and cmd.wait_literal_data():
                need = cmd._expected_size - len(cmd._resp_literal_data)
                chunk = data[pos:pos + need]
                pos += len(chunk)
                cmd.append_literal_data(chunk)
                if cmd.wait_literal_data():
                    raise aio.IncompleteRead(cmd)
                continue
            nl = data.find(CRLF, pos)
            if nl < 0:
                raise aio.IncompleteRead(cmd, data[pos:])
            line = data[pos:nl]
            pos = nl + 2
            handled = line_handler(line, cmd)
            literal = _LITERAL_AT_END.search(line)
            if literal:
                if handled is None:
                    handled = aio.Command("NIL", "unused", loop=self.loop)
                handled.begin_literal_data(int(literal.group(1)))
                cmd = handled
            elif handled is not None and handled.wait_data():
                cmd = handled
            else:
                cmd = None

    def _continuation(self, line: bytes) -> None:
        pending = self.pending_sync_command
        if pending is not None and pending.name == "AUTHENTICATE":
            # RFC 3501 §6.2.2: one response per challenge; "*" cancels if asked again
            answer, self.sasl_response = self.sasl_response or b"*", None
            self.transport.write(answer + CRLF)
            return
        super()._continuation(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        commands = [c for c in [self.pending_sync_command, *self.pending_async_commands.values()] if c is not None]
        for c in commands:
            c._exception = aio.Abort(f"connection lost: {self.lost}")
            c.close(b"connection lost", "KO")
        super().connection_lost(exc)

    @aio.change_state
    async def authenticate_plain(self, authzid: str, authcid: str, password: str) -> aio.Response:
        token = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode("ascii")
        if "SASL-IR" in self.capabilities:
            command = aio.Command("AUTHENTICATE", self.new_tag(), "PLAIN", token, loop=self.loop)
        else:
            self.sasl_response = token.encode("ascii")
            command = aio.Command("AUTHENTICATE", self.new_tag(), "PLAIN", loop=self.loop)
        response = await self.execute(command, scrub=token)
        self.sasl_response = None
        if response.result == "OK":
            self.state = aio.AUTH
        return response

    @aio.change_state
    async def plain_login(self, user: str, password: str) -> aio.Response:
        response = await self.execute(
            aio.Command("LOGIN", self.new_tag(), aio.quoted(user), aio.quoted(password), loop=self.loop),
            scrub=password)
        if response.result == "OK":
            self.state = aio.AUTH
        return response

    @aio.change_state
    async def examine(self, mailbox: str) -> aio.Response:
        response = await self.execute(aio.Command("EXAMINE", self.new_tag(), aio.quoted(mailbox), loop=self.loop))
        if response.result == "OK":
            self.state = aio.SELECTED
        return response


class _Client(aio.IMAP4):
    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context,
                                         server_hostname=host if ssl_context else None))


# ------------------------------------------------------------------ parsed values


@dataclass(frozen=True)
class ListEntry:
    """One LIST line: the name as the server spells it (modified UTF-7), decoded, and its parts."""

    raw: str
    name: str
    delimiter: str | None
    attributes: frozenset[str]

    @property
    def selectable(self) -> bool:
        return not ({"\\noselect", "\\nonexistent"} & {a.lower() for a in self.attributes})

    @property
    def parts(self) -> list[str]:
        return self.name.split(self.delimiter) if self.delimiter else [self.name]


@dataclass
class FetchedMessage:
    uid: int
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    size: int = 0
    body: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Examined:
    uidvalidity: int
    uidnext: int
    exists: int


# ------------------------------------------------------------------ the client


@dataclass
class ImapEndpoint:
    """Where and how to reach the old server."""

    host: str
    port: int | None = None
    tls: str = "implicit"  # implicit | starttls | none (RFC 8314 recommends implicit)
    verify: bool = True
    ca_file: str | None = None
    timeout: float = 300.0

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class ImapSource:
    """One logged-in connection to the old server, used by one account's migration at a time."""

    def __init__(self, endpoint: ImapEndpoint) -> None:
        self.endpoint = endpoint
        self.client: _Client | None = None

    @property
    def protocol(self) -> _Protocol:
        assert self.client is not None, "not connected"
        return self.client.protocol  # type: ignore[return-value]

    @property
    def capabilities(self) -> set[str]:
        return {c.upper() for c in self.protocol.capabilities}

    async def connect(self) -> None:
        ep = self.endpoint
        if ep.tls not in ("implicit", "starttls", "none"):
            raise SourceError("tls", f'"{ep.tls}" is not implicit, starttls or none')
        ctx = ep.context() if ep.tls == "implicit" else None
        try:
            self.client = _Client(ep.host, ep.effective_port, timeout=ep.timeout, ssl_context=ctx)
            await self.client.wait_hello_from_server()
            if ep.tls == "starttls":
                await self._starttls()
        except (TimeoutError, OSError, ssl.SSLError, aio.AioImapException) as e:
            await self.close()
            raise SourceError("host", f"cannot connect to {ep.host}:{ep.effective_port} ({ep.tls}): "
                              f"{_describe(e)}") from None

    async def _starttls(self) -> None:
        p = self.protocol
        if "STARTTLS" not in self.capabilities:
            raise SourceError("tls", f"{self.endpoint.host} does not offer STARTTLS (try --tls implicit)")
        response = await asyncio.wait_for(p.execute(aio.Command("STARTTLS", p.new_tag(), loop=p.loop)),
                                          self.endpoint.timeout)
        if response.result != "OK":
            raise SourceError("tls", f"STARTTLS refused: {_text(response)}")
        p.transport = await p.loop.start_tls(p.transport, p, self.endpoint.context(),
                                             server_hostname=self.endpoint.host)
        await asyncio.wait_for(p.capability(), self.endpoint.timeout)

    async def login(self, user: str, password: str, *, master_user: str | None = None) -> None:
        """PLAIN when offered (UTF-8 safe, and the only way to name an authorization identity),
        else LOGIN. `master_user`: log in as that administrator on behalf of `user`."""
        p = self.protocol
        if self.endpoint.tls == "none" and "LOGINDISABLED" in self.capabilities:
            raise SourceError("tls", f"{self.endpoint.host} refuses logins without TLS (use --tls starttls)")
        if master_user or "AUTH=PLAIN" in self.capabilities:
            if "AUTH=PLAIN" not in self.capabilities:
                raise SourceError("master_user", f"{self.endpoint.host} does not offer AUTHENTICATE PLAIN, "
                                  "which a master-user login needs")
            authcid = master_user or user
            response = await asyncio.wait_for(p.authenticate_plain(user if master_user else "", authcid, password),
                                              self.endpoint.timeout)
        else:
            response = await asyncio.wait_for(p.plain_login(user, password), self.endpoint.timeout)
        if response.result != "OK":
            who = f"{master_user} for {user}" if master_user else user
            raise SourceError("login", f"{self.endpoint.host} refused the login of {who}: {_text(response)}")
        await asyncio.wait_for(p.capability(), self.endpoint.timeout)

    async def list(self) -> list[ListEntry]:
        response = await self._ok(self.client.list('""', '"*"'), "list")  # type: ignore[union-attr]
        return parse_list(response.lines[:-1])

    async def examine(self, raw_name: str) -> Examined:
        response = await self._ok(self.protocol.examine(raw_name), "folder", raw_name)
        uidvalidity = uidnext = exists = 0
        for line in response.lines:
            if type(line) is not bytes:
                continue
            for code, value in _CODE.findall(line):
                if code == b"UIDVALIDITY":
                    uidvalidity = int(value)
                else:
                    uidnext = int(value)
            m = _EXISTS.match(line)
            if m:
                exists = int(m.group(1))
        return Examined(uidvalidity, uidnext, exists)

    async def fetch(self, uid_set: str, items: str) -> list[FetchedMessage]:
        p = self.protocol
        command = _Fetch(p.new_tag(), uid_set, items, prefix="UID", loop=p.loop, timeout=self.endpoint.timeout)
        response = await self._ok(p.execute(command), "fetch", uid_set)
        return parse_fetch(response.lines[:-1])

    async def _ok(self, awaitable: Any, what: str, arg: str = "") -> aio.Response:
        try:
            response = await asyncio.wait_for(awaitable, self.endpoint.timeout * 2)
        except (TimeoutError, OSError, aio.AioImapException) as e:
            raise SourceError(what, f"{self.endpoint.host}: {what} {arg} failed: {_describe(e)}") from None
        if response.result != "OK":
            raise SourceError(what, f"{self.endpoint.host}: {what} {arg}: {_text(response)}")
        return response

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            p = client.protocol
            if p is not None and p.transport is not None and not p.lost and p.state in (aio.AUTH, aio.SELECTED,
                                                                                         aio.NONAUTH):
                await asyncio.wait_for(client.logout(), 10)
        except Exception:
            pass
        finally:
            transport = client.protocol.transport if client.protocol is not None else None
            if transport is not None:
                transport.close()


def _text(response: aio.Response) -> str:
    last = response.lines[-1] if response.lines else b""
    return bytes(last).decode("utf-8", "replace").strip() or response.result


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


# ------------------------------------------------------------------ response parsing


def _tokens(segments: list[bytes | bytearray]) -> list[Any]:
    """Tokens of one response: atoms and quoted strings as str, literals as bytes, lists as lists.

    `segments` alternate as aioimaplib delivers them: a line ending in `{n}`,
    then the n literal bytes (a bytearray), then the rest of the line.
    """
    stack: list[list[Any]] = [[]]
    pending_literal = False
    for seg in segments:
        if type(seg) is not bytes:
            if pending_literal:
                stack[-1].append(bytes(seg))
                pending_literal = False
            continue
        s, i, n = seg, 0, len(seg)
        while i < n:
            c = s[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:  # (
                stack.append([])
                i += 1
            elif c == 0x29:  # )
                done = stack.pop() if len(stack) > 1 else []
                stack[-1].append(done)
                i += 1
            elif c == 0x22:  # "
                j, out = i + 1, bytearray()
                while j < n and s[j] != 0x22:
                    if s[j] == 0x5C and j + 1 < n:
                        j += 1
                    out.append(s[j])
                    j += 1
                stack[-1].append(out.decode("utf-8", "surrogateescape"))
                i = j + 1
            elif c == 0x7B and _LITERAL_AT_END.match(s, i):  # {n} at the end of the line
                pending_literal = True
                i = n
            else:
                j = i
                depth = 0
                while j < n:
                    ch = s[j]
                    if ch == 0x5B:  # [ (BODY[...] keeps its brackets and spaces inside)
                        depth += 1
                    elif ch == 0x5D:
                        depth -= 1
                    elif depth == 0 and ch in (0x20, 0x28, 0x29):
                        break
                    j += 1
                stack[-1].append(s[i:j].decode("utf-8", "surrogateescape"))
                i = j
    while len(stack) > 1:
        done = stack.pop()
        stack[-1].append(done)
    return stack[0]


def parse_list(lines: list[bytes | bytearray]) -> list[ListEntry]:
    """`* LIST (attrs) "delim" name` lines (aioimaplib strips `* LIST `); names may be literals."""
    groups: list[list[bytes | bytearray]] = []
    for line in lines:
        if type(line) is bytes and line.startswith(b"("):
            groups.append([line])
        elif groups:
            groups[-1].append(line)
    entries = []
    for g in groups:
        t = _tokens(g)
        if len(t) < 3 or not isinstance(t[0], list):
            continue
        attrs = frozenset(str(a) for a in t[0])
        delim = None if t[1] == "NIL" else str(t[1])
        raw = t[2].decode("utf-8", "surrogateescape") if isinstance(t[2], bytes) else str(t[2])
        try:
            name = mutf7.decode(raw)
        except ValueError:
            name = _lenient_mutf7(raw)
        if name.upper() == "INBOX":
            name = raw = "INBOX"
        entries.append(ListEntry(raw, name, delim, attrs))
    return entries


_MUTF7_RUN = re.compile(r"&([A-Za-z0-9+,]*)-")


def _lenient_mutf7(raw: str) -> str:
    """A name our strict codec refuses, read as its server meant it (RFC 3501 §5.1.3).

    Old servers do write non-canonical forms (two encoded runs side by side,
    padding bits left set) that the strict decoder rejects; the user still
    saw "Thư đã gửi". Each run is decoded on its own; a name that is not
    modified UTF-7 at all (a server sending raw UTF-8) stays as it is.
    """

    def run(m: re.Match[str]) -> str:
        b64 = m.group(1).replace(",", "/")
        if not b64:
            return "&"
        try:
            data = base64.b64decode(b64 + "=" * (-len(b64) % 4))
            return data[: len(data) // 2 * 2].decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            raise _NotMutf7 from None

    if not raw.isascii():
        return raw  # UTF-8 as it is (a server with UTF8=ACCEPT habits)
    try:
        return _MUTF7_RUN.sub(run, raw)
    except _NotMutf7:
        return raw


class _NotMutf7(Exception):
    pass


def parse_fetch(lines: list[bytes | bytearray]) -> list[FetchedMessage]:
    items: list[list[bytes | bytearray]] = []
    for line in lines:
        if type(line) is bytes and _FETCH_START.match(line):
            items.append([line[line.index(b"(") :]])
        elif items:
            items[-1].append(line)
    out = []
    for segs in items:
        t = _tokens(segs)
        attrs = t[0] if t and isinstance(t[0], list) else []
        values = dict(zip(attrs[::2], attrs[1::2], strict=False))
        uid = values.get("UID")
        if uid is None:
            continue  # an unsolicited flag update without a UID
        msg = FetchedMessage(int(uid))
        for key, value in values.items():
            k = key.upper()
            if k == "FLAGS":
                msg.flags = tuple(str(f) for f in value)
            elif k == "INTERNALDATE":
                msg.internal_date = parse_internal_date(str(value))
            elif k == "RFC822.SIZE":
                msg.size = int(value)
            elif k.startswith("BODY[") or k == "RFC822":
                msg.body = value if isinstance(value, bytes) else (None if value == "NIL" else str(value).encode())
            elif k != "UID":
                msg.extra[k] = value
        out.append(msg)
    return out


def parse_internal_date(text: str) -> datetime | None:
    """RFC 3501 date-time: "17-Jul-1996 02:44:25 -0700" (day may be space-padded)."""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None
