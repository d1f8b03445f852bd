"""The real IMAP server for tests: `mailserver init`, then the App and its IMAP listeners
in a background thread with their own event loop, on free loopback ports.

Running the server in a thread (not a subprocess) keeps each test fast and
lets a test provision accounts or deliver mail through the same `App`
(`server.call(...)`), while the clients under test (imaplib, aioimaplib,
mbsync) still talk to it only over real TCP/TLS sockets.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from mailserver.app import App
from mailserver.serve import imap_services
from policy.calendar import utc_now
from policy.loader import load
from storage.directory import PersonRequest
from tests.helpers import cli, write_config

T = TypeVar("T")
PASSWORD = "Mật-khẩu#2026aA"  # Đ9-compliant, with Vietnamese letters (UTF-8 through LOGIN literals)
PLAIN_PASSWORD = "Matkhau#2026aA"


class ShiftableClock:
    """Real time plus an offset a test can move forward (password expiry, retirement dates)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset


class ServerThread:
    def __init__(self, config: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app: App | None = None
        self.services: list[Any] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="imap-test-server", daemon=True)
        self.ports: dict[str, int] = {}
        self._users = 0

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to the test thread
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app = await App.open(loaded=load(self.config), clock=self.clock)
        try:
            self.services = imap_services(self.app)
            for s in self.services:
                await s.start()
                self.ports[s.name] = s.bound_port
            self._ready.set()
            await self._stop.wait()
        finally:
            for s in reversed(self.services):
                await s.stop()
            await self.app.close()

    def call(self, fn: Callable[[App], Awaitable[T]], timeout: float = 60) -> T:
        """Run `fn(app)` on the server's loop and return its result."""
        assert self.loop is not None and self.app is not None
        app = self.app
        return asyncio.run_coroutine_threadsafe(_call(fn, app), self.loop).result(timeout)

    # ------------------------------------------------------------ accounts

    def add_person(self, name: str, password: str = PASSWORD, unit: str | None = "stttt", **kw: Any) -> str:
        async def add(app: App) -> str:
            created = await app.directory.add_person(
                PersonRequest(name=name, unit=unit, password=password, must_change=False, **kw), actor="test"
            )
            await app.store.create_mailbox(created.account)
            return created.account.address

        return self.call(add)

    def new_user(self) -> str:
        """A fresh account (so tests sharing one server never see each other's mail)."""
        self._users += 1
        return self.add_person(f"Người Thử {self._users}", PLAIN_PASSWORD, address=f"thu{self._users}")

    def deliver(self, address: str, message: bytes, folder: str = "INBOX", flags: frozenset[str] = frozenset()) -> Any:
        """Put a message into a mailbox the way SMTP delivery does (the store's one path to disk)."""

        async def put(app: App) -> Any:
            account = await app.directory.get_account(address)
            return await app.store.deliver(account, message, folder=folder, flags=flags)

        return self.call(put)

    def fill(self, address: str, n: int, subject: str = "Thư số {i}", flags: Iterable[str] = ()) -> list[int]:
        """Deliver `n` small messages; returns their UIDs."""
        return [self.deliver(address, message(subject.format(i=i)), flags=frozenset(flags)).uid for i in range(n)]

    def usage(self, address: str) -> Any:
        async def get(app: App) -> Any:
            return await app.store.usage(await app.directory.get_account(address))

        return self.call(get)

    def login(self, address: str) -> imaplib.IMAP4_SSL:
        c = self.imaps()
        c.login(address, PLAIN_PASSWORD)
        return c

    # ------------------------------------------------------------ clients

    def client_context(self) -> ssl.SSLContext:
        """Trusts the self-signed certificate `mailserver init` wrote."""
        assert self.app is not None
        ctx = ssl.create_default_context(cafile=str(self.app.settings.cert_path))
        return ctx

    def imaps(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("localhost", self.ports["imaps"], ssl_context=self.client_context(), timeout=30)

    def imap(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)


async def _call(fn: Callable[[App], Awaitable[T]], app: App) -> T:
    return await fn(app)


def make_server(tmp: Path, *, extra: str = "", policy: str = "", imap_extra: str = "",
                clock: Callable[[], datetime] = utc_now) -> ServerThread:
    """Configure, `mailserver init`, and return an unstarted server (use it as a context manager)."""
    cfg = write_config(tmp, extra=extra, policy=policy)
    if imap_extra:
        text = cfg.read_text(encoding="utf-8")
        text = text.replace("  imap: {host: 127.0.0.1,", "  imap: {" + imap_extra + ", host: 127.0.0.1,")
        cfg.write_text(text, encoding="utf-8")
    cli(cfg, "init", check=True)
    return ServerThread(cfg, clock)


def message(subject: str = "Công văn số 12/UBND", body: str = "Kính gửi các đơn vị.", *,
            sender: str = "Nguyễn Văn A <nguyenvana@phuyen.gov.vn>", to: str = "vp@phuyen.gov.vn",
            date: str = "Mon, 05 Jan 2026 08:00:00 +0700", attachment: bytes | None = None,
            filename: str = "báo cáo.pdf", extra_headers: str = "") -> bytes:
    """A message as Thunderbird writes it: RFC 2047 headers, UTF-8 text, optional attachment."""
    from email.header import Header

    def enc(text: str) -> str:
        return text if text.isascii() else Header(text, "utf-8").encode()

    name, _, addr = sender.rpartition(" <")
    head = (f"From: {enc(name)} <{addr}\r\nTo: {to}\r\nSubject: {enc(subject)}\r\nDate: {date}\r\n"
            f"Message-ID: <{abs(hash((subject, body, date)))}@phuyen.gov.vn>\r\nMIME-Version: 1.0\r\n{extra_headers}")
    text = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + body + "\r\n")
    if attachment is None:
        return (head + text).encode()
    import base64

    blob = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="==b=="\r\n\r\n--==b==\r\n' + text
            + f'--==b==\r\nContent-Type: application/pdf; name="{enc(filename)}"\r\n'
            f'Content-Disposition: attachment; filename="{enc(filename)}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + blob + "--==b==--\r\n").encode()


class Wire:
    """A raw IMAP connection for checks imaplib hides: exact lines, their order, literals.

    `cmd("FETCH 1 (FLAGS)")` sends a tagged command and returns every line up
    to and including the tagged reply; a line announcing a literal is returned
    with the literal's bytes appended.
    """

    def __init__(self, server: ServerThread, *, tls: bool = True, user: str | None = None) -> None:
        port = server.ports["imaps" if tls else "imap"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock: socket.socket = server.client_context().wrap_socket(raw, server_hostname="localhost") if tls else raw
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        self.n = 0
        if user is not None:
            lines = self.cmd(f"LOGIN {user} {PLAIN_PASSWORD}")
            assert lines[-1].startswith(b"%s OK" % self.last_tag), lines

    @property
    def last_tag(self) -> bytes:
        return b"t%d" % self.n

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        ln = self.file.readline()
        m = re.search(rb"\{(\d+)\}\r\n\Z", ln)
        while m:
            ln += self.file.read(int(m.group(1)))
            more = self.file.readline()
            ln += more
            m = re.search(rb"\{(\d+)\}\r\n\Z", more)
        return ln

    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            ln = self.line()
            assert ln, f"connection closed after {lines}"
            lines.append(ln)
            if ln.startswith(tag + b" "):
                return lines

    def cmd(self, text: str | bytes) -> list[bytes]:
        self.n += 1
        body = text.encode() if isinstance(text, str) else text
        self.send(self.last_tag + b" " + body + b"\r\n")
        return self.until(self.last_tag)

    def ok(self, text: str | bytes) -> list[bytes]:
        lines = self.cmd(text)
        assert lines[-1].startswith(self.last_tag + b" OK"), lines
        return lines

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
