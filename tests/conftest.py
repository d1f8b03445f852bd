from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailserver.app import App
from policy.loader import load
from tests.helpers import cli, write_config


class Clock:
    """A settable clock for simulated-time tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def initialised(config_file: Path) -> Path:
    cli(config_file, "init", check=True)
    return config_file


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))


@pytest.fixture
async def app(config_file: Path, clock: Clock) -> AsyncIterator[App]:
    a = await App.open(loaded=load(config_file), clock=clock)
    await a.directory.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="test")
    yield a
    await a.close()


# ---------------------------------------------------------------- IMAP (tests/imap_support.py)


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    """The real IMAP listeners on free loopback ports, one per test module."""
    from tests.imap_support import make_server

    with make_server(tmp_path_factory.mktemp("imap")) as srv:
        yield srv


@pytest.fixture
def imap_user(imap_server) -> str:
    """A fresh account with its Maildir++ tree and special folders."""
    return imap_server.new_user()


@pytest.fixture
def imap(imap_server, imap_user):
    """imaplib logged in to a fresh account over implicit TLS."""
    c = imap_server.login(imap_user)
    yield c
    try:
        c.logout()
    except Exception:
        pass


@pytest.fixture
def wire(imap_server, imap_user):
    """A raw IMAP connection logged in to a fresh account (tests/imap_support.Wire)."""
    from tests.imap_support import Wire

    w = Wire(imap_server, user=imap_user)
    yield w
    w.close()


# SMTP: a real clamd and spamd per session, a DNS server and a running SMTP service per test
# (tests/smtp_fixtures.py)
# Outbound: remote MX hosts on loopback found through the test DNS server (tests/outbound_support.py)
from tests.outbound_support import outbound_env  # noqa: E402, F401
from tests.smtp_fixtures import clamd_daemon, dns, smtp_env, spam_env, spamd_daemon  # noqa: E402, F401
