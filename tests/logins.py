"""Log in through every protocol a running server serves, with real clients.

The issue asks that after a password change the new password works at once
"for every protocol that exists", tested by logging in through each. Which
protocols exist is read from the server itself (`/healthz` lists every
listener a running service opened), so this helper grows with the server:

* a listener that is served but has no probe in `PROBES` fails the test,
  telling whoever added the listener to add its probe here;
* IMAP: "imap" (STARTTLS, then LOGIN) and "imaps" (implicit TLS), with imaplib;
* SMTP: "submission" (STARTTLS then AUTH) and "submissions" (implicit TLS),
  with smtplib; "smtp" (the MX) takes no logins.

A probe is a plain function `(server, address, password) -> LoginAttempt`
using a real client library (urllib, smtplib, imaplib ...). It must return
ok=False for a refused login rather than raise, so a test can also assert
that the old password is refused everywhere.
"""

from __future__ import annotations

import http.cookiejar
import imaplib
import json
import re
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tests.server import ServerProcess


@dataclass(frozen=True)
class LoginAttempt:
    listener: str
    ok: bool
    detail: str = ""


Probe = Callable[[ServerProcess, str, str], LoginAttempt]
C = TypeVar("C")

# Listeners that never take a password (the MX accepts mail from anyone, without AUTH).
NO_LOGIN = frozenset({"smtp"})


def http_opener(server: ServerProcess) -> urllib.request.OpenerDirector:
    """A urllib client with its own cookie jar that trusts the server's certificate."""
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    ]
    if server.settings.listeners.web.tls:
        handlers.append(urllib.request.HTTPSHandler(context=server.tls_client_context()))
    return urllib.request.build_opener(*handlers)


def served_listeners(server: ServerProcess) -> list[str]:
    """Every listener the running server has opened, as its /healthz reports them."""
    try:
        with http_opener(server).open(f"{server.web_url}/healthz", timeout=10) as r:
            report = json.load(r)
    except urllib.error.HTTPError as e:  # 503: unhealthy, but the report is there
        report = json.load(e)
    return sorted(name.split(":", 1)[1] for name in report["checks"] if name.startswith("listener:"))


def web_probe(server: ServerProcess, address: str, password: str) -> LoginAttempt:
    """Sign in on /account as a browser without scripts would: fetch the form, post it with its token."""
    opener = http_opener(server)
    with opener.open(f"{server.web_url}/account", timeout=10) as r:
        page = r.read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    if token is None:
        return LoginAttempt("web", False, "no CSRF token on the sign-in page")
    form = urllib.parse.urlencode({"csrf": token.group(1), "address": address, "password": password}).encode()
    try:
        with opener.open(f"{server.web_url}/account/signin", data=form, timeout=30) as r:
            landed = r.read().decode()
            url = r.url
    except urllib.error.HTTPError as e:
        return LoginAttempt("web", False, f"HTTP {e.code}")
    ok = url.endswith("/account") and 'id="change"' in landed
    return LoginAttempt("web", ok, url)


def tls_session_probe(name: str, connect: Callable[[], C], login: Callable[[C], tuple[bool, str]],
                      close: Callable[[C], object], errors: tuple[type[Exception], ...]) -> LoginAttempt:
    """Connect (TLS), log in, close: a refused login or a failed connection is ok=False, never an exception."""
    try:
        client = connect()
    except (OSError, *errors) as e:
        return LoginAttempt(name, False, f"connection: {e}")
    try:
        ok, detail = login(client)
        return LoginAttempt(name, ok, detail)
    except errors as e:
        return LoginAttempt(name, False, str(e))
    finally:
        try:
            close(client)
        except (OSError, *errors):
            pass


def imap_probe(server: ServerProcess, address: str, password: str, *, implicit: bool) -> LoginAttempt:
    """LOGIN after STARTTLS (143) or on implicit TLS (993), verifying the server's certificate."""
    name = "imaps" if implicit else "imap"
    host, port = server.address(name)
    ctx = server.tls_client_context()

    def connect() -> imaplib.IMAP4:
        if implicit:
            return imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
        client = imaplib.IMAP4(host, port, timeout=30)
        client.starttls(ssl_context=ctx)
        return client

    def login(client: imaplib.IMAP4) -> tuple[bool, str]:
        typ, data = client.login(address, password)
        return typ == "OK", repr(data)

    return tls_session_probe(name, connect, login, lambda c: c.logout(), (imaplib.IMAP4.error,))


def smtp_probe(server: ServerProcess, address: str, password: str, *, implicit: bool) -> LoginAttempt:
    """SMTP AUTH after STARTTLS (587) or on implicit TLS (465), as Outlook and Thunderbird do."""
    name = "submissions" if implicit else "submission"
    host, port = server.address(name)
    ctx = server.tls_client_context()

    def connect() -> smtplib.SMTP:
        if implicit:
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, context=ctx, timeout=30)
        else:
            client = smtplib.SMTP(host, port, timeout=30)
            client.starttls(context=ctx)
        client.ehlo("probe.example.net")
        return client

    def login(client: smtplib.SMTP) -> tuple[bool, str]:
        code, text = client.login(address, password)
        return code == 235, text.decode(errors="replace")

    return tls_session_probe(name, connect, login, lambda c: c.quit(), (smtplib.SMTPException,))


PROBES: dict[str, Probe] = {
    "web": web_probe,
    "imap": lambda server, address, password: imap_probe(server, address, password, implicit=False),
    "imaps": lambda server, address, password: imap_probe(server, address, password, implicit=True),
    "submission": lambda server, address, password: smtp_probe(server, address, password, implicit=False),
    "submissions": lambda server, address, password: smtp_probe(server, address, password, implicit=True),
}


def login_everywhere(server: ServerProcess, address: str, password: str) -> dict[str, LoginAttempt]:
    """Try `address`/`password` on every login listener the server serves."""
    listeners = [n for n in served_listeners(server) if n not in NO_LOGIN]
    missing = [n for n in listeners if n not in PROBES]
    if missing:
        raise AssertionError(
            f"the server serves {', '.join(missing)} but tests/logins.py has no login probe for "
            f"{'it' if len(missing) == 1 else 'them'}: add one to PROBES"
        )
    return {n: PROBES[n](server, address, password) for n in listeners}
