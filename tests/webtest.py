"""The web service in the test's own event loop, on a real loopback socket, driven over HTTP.

End-to-end tests start `mailserver serve` (tests/server.py); these run the
same aiohttp application in-process so that a test can move the App's clock
(password expiry after a month, session expiry after 15 idle minutes) and
look into the directory and the metrics directly. The HTTP traffic is real:
aiohttp's client talks to a listening socket, with TLS when asked.
"""

from __future__ import annotations

import html
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from mailserver.app import App
from mailserver.tls import server_context
from mailserver.tlsgen import write_self_signed
from mailserver.web.service import build_web_app

TEST_KEY = b"0123456789abcdef0123456789abcdef"
PW = "Matkhau@123"
NEW_PW = "Phuyen#2026moi"


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]
    url: str
    cookies: list[str]  # raw Set-Cookie headers

    @property
    def csrf(self) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert m, f"no CSRF token in page ({self.status}):\n{self.text[:2000]}"
        return m.group(1)

    def by_id(self, element_id: str) -> str:
        """The text inside the element with this id (tags stripped), or "" if absent."""
        m = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</(div|span|ul|section|progress)>', self.text, re.S)
        return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1)))).strip() if m else ""


class WebClient:
    """A cookie-keeping HTTP client of one user."""

    def __init__(self, session: aiohttp.ClientSession, base: str, ssl_ctx: ssl.SSLContext | None) -> None:
        self.session = session
        self.base = base
        self.ssl = ssl_ctx if ssl_ctx is not None else False

    async def request(self, method: str, path: str, *, data: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, follow: bool = True,
                      body: bytes | None = None) -> Page:
        async with self.session.request(
            method, self.base + path, data=body if body is not None else data, headers=headers,
            allow_redirects=follow, ssl=self.ssl,
        ) as r:
            text = await r.text()
            cookies = r.headers.getall("Set-Cookie", [])
            for h in r.history:
                cookies = h.headers.getall("Set-Cookie", []) + cookies
            return Page(r.status, text, dict(r.headers), str(r.url), cookies)

    async def get(self, path: str, **kw: object) -> Page:
        return await self.request("GET", path, **kw)  # type: ignore[arg-type]

    async def post(self, path: str, data: dict[str, str], **kw: object) -> Page:
        return await self.request("POST", path, data=data, **kw)  # type: ignore[arg-type]

    async def post_raw(self, body: bytes, path: str = "/autodiscover/autodiscover.xml",
                       content_type: str = "text/xml") -> Page:
        return await self.request("POST", path, body=body, headers={"Content-Type": content_type})

    async def sign_in(self, address: str, password: str) -> Page:
        form = await self.get("/account")
        return await self.post("/account/signin", {"csrf": form.csrf, "address": address, "password": password})

    async def change(self, current: str, new: str, confirm: str | None = None) -> Page:
        page = await self.get("/account")
        return await self.post("/account/password", {
            "csrf": page.csrf, "current": current, "new": new, "confirm": new if confirm is None else confirm,
        })


@dataclass
class RunningWeb:
    app: App
    base: str
    ssl_ctx: ssl.SSLContext | None

    @asynccontextmanager
    async def client(self) -> AsyncIterator[WebClient]:
        # unsafe=True: keep cookies for an IP-address host (127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            yield WebClient(s, self.base, self.ssl_ctx)


@asynccontextmanager
async def running_web(app: App, *, tls: bool = False, cert_dir: Path | None = None) -> AsyncIterator[RunningWeb]:
    server_tls = client_tls = None
    if tls:
        assert cert_dir is not None
        cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
        write_self_signed(cert, key, "mail.phuyen.gov.vn", ["phuyen.gov.vn"])
        server_tls = server_context(cert, key)
        client_tls = ssl.create_default_context(cafile=str(cert))
    runner = web.AppRunner(build_web_app(app, TEST_KEY, tls))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningWeb(app, f"{'https' if tls else 'http'}://127.0.0.1:{port}", client_tls)
    finally:
        await runner.cleanup()
