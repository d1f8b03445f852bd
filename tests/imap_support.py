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
import ssl
import threading
from collections.abc import Awaitable, Callable
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
            store = getattr(app, "store", None)
            if store is not None:
                await store.create_mailbox(created.account)
            return created.account.address

        return self.call(add)

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
