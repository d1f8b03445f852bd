"""Fixtures for the SMTP tests: one real clamd and spamd per test session, a DNS server and a running server
per test.

They are registered in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from mailserver.app import App
from mailserver.smtp_wiring import build_services
from mailserver.tlsgen import write_self_signed
from policy.loader import load
from smtp.service import SmtpService
from storage.directory import PersonRequest
from tests.helpers import free_port, write_config
from tests.smtp_support import PASSWORD, Clamd, DnsServer, wait_port
from tests.spamd import Spamd


@pytest.fixture(scope="session")
def clamd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    c = Clamd(tmp_path_factory.mktemp("clamd"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    d = DnsServer()
    yield d
    d.stop()


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SmtpEnv:
    def __init__(self, app: App, service: SmtpService, ports: dict[str, int], base: Path, dns: DnsServer) -> None:
        self.app = app
        self.service = service
        self.svc = service.svc
        self.ports = ports
        self.base = base
        self.dns = dns
        self.config = base / "etc" / "mailserver.yaml"

    async def person(self, name: str, **kw: Any) -> str:
        created = await self.app.directory.add_person(
            PersonRequest(name=name, unit=kw.pop("unit", None), password=PASSWORD, must_change=False, **kw),
            actor="test",
        )
        return created.account.address

    def client(self, listener: str = "smtp", **kw: Any) -> aiosmtplib.SMTP:
        port = self.ports[listener]
        opts: dict[str, Any] = {"hostname": "127.0.0.1", "port": port, "tls_context": client_tls(),
                                "local_hostname": "client.example.net", "timeout": 30}
        if listener == "submissions":
            opts["use_tls"] = True
        elif listener == "submission":
            opts["start_tls"] = True
        else:
            opts["start_tls"] = False
        opts.update(kw)
        return aiosmtplib.SMTP(**opts)

    async def login(self, address: str, listener: str = "submission") -> aiosmtplib.SMTP:
        c = self.client(listener)
        await c.connect()
        await c.login(address, PASSWORD)
        return c

    def log_events(self, **query: Any) -> list[dict[str, Any]]:
        from storage.maillog import Query, search

        return list(search(self.app.settings.paths.log_dir, Query(**query), self.app.policy.tz))

    async def inbox(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """Messages on disk in the recipient's Maildir folder (the files are the truth)."""
        account = await self.app.directory.get_account(address)
        assert account is not None
        root = self.app.store.mailbox_path(account)
        base = root if folder == "INBOX" else root / ("." + folder)
        files = sorted([*(base / "new").glob("*"), *(base / "cur").glob("*")], key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes() for p in files]


def message(sender: str, to: str, subject: str = "Giấy mời họp", body: str = "Kính gửi đồng chí.\r\n",
            extra_headers: str = "", date: str = "Fri, 27 Nov 2026 09:00:00 +0700") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{abs(hash(subject + body))}@test>\r\n"
            f"Date: {date}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n{extra_headers}\r\n"
            f"{body}").encode()


async def open_env(tmp_path: Path, clamd: Clamd, dns: DnsServer, *, policy: str = "", extra: str = "",
                   clock: Any = None) -> SmtpEnv:
    """A running SMTP service (the production listeners and checks) on free loopback ports."""
    ports = {name: free_port() for name in ("smtp", "submission", "submissions")}
    cfg = write_config(tmp_path, policy=policy, ports=ports, extra=(
        f"clamd: {{socket: {clamd.socket}, timeout: 10}}\n"
        f"dns: {{nameservers: [127.0.0.1], port: {dns.port}, timeout: 1}}\n" + extra
    ))
    loaded = load(cfg)
    s = loaded.settings
    write_self_signed(s.cert_path, s.key_path, s.hostname, s.domains)
    app = await App.open(loaded=loaded, clock=clock) if clock is not None else await App.open(loaded=loaded)
    await app.directory.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="test")
    service = SmtpService(build_services(app))
    await service.start()
    for p in ports.values():
        await wait_port(p)
    return SmtpEnv(app, service, ports, tmp_path, dns)


async def close_env(env: SmtpEnv) -> None:
    await env.service.stop()
    await env.app.close()


@pytest.fixture
async def smtp_env(tmp_path: Path, clamd_daemon: Clamd, dns: DnsServer, request: pytest.FixtureRequest) \
        -> AsyncIterator[SmtpEnv]:
    async with running_env(tmp_path, clamd_daemon, dns, request) as env:
        yield env


@pytest.fixture(scope="session")
def spamd_daemon() -> Iterator[Spamd]:
    s = Spamd().start()
    yield s
    s.stop()


@pytest.fixture
async def spam_env(tmp_path: Path, clamd_daemon: Clamd, dns: DnsServer, spamd_daemon: Spamd,
                   request: pytest.FixtureRequest) -> AsyncIterator[SmtpEnv]:
    """`smtp_env` scoring through the session's real spamd (Đ8.2.b, Đ13.6)."""
    spamd = f"spamd: {{host: 127.0.0.1, port: {spamd_daemon.port}, timeout: 60}}\n"
    async with running_env(tmp_path, clamd_daemon, dns, request, spamd) as env:
        yield env


@contextlib.asynccontextmanager
async def running_env(tmp_path: Path, clamd_daemon: Clamd, dns: DnsServer, request: pytest.FixtureRequest,
                      more: str = "") -> AsyncIterator[SmtpEnv]:
    """The SMTP listeners of a fresh App, with the `smtp_config` marker's policy and settings."""
    marker = request.node.get_closest_marker("smtp_config")
    policy = marker.kwargs.get("policy", "") if marker else ""
    extra = (marker.kwargs.get("extra", "") if marker else "") + more
    env = await open_env(tmp_path, clamd_daemon, dns, policy=policy, extra=extra)
    try:
        yield env
    finally:
        await close_env(env)
