"""LOGIN and AUTHENTICATE PLAIN through the shared AuthService: TLS first, lock states,
the brute-force limiter shared with SMTP and the web (Đ6, Đ5.3.b, Đ13.3)."""

from __future__ import annotations

import base64
import imaplib
import socket
import ssl
from datetime import timedelta

import pytest

from storage.auth import Outcome
from tests.imap_support import PLAIN_PASSWORD, ShiftableClock, make_server


@pytest.fixture(scope="module")
def clock():
    return ShiftableClock()


@pytest.fixture(scope="module")
def server(tmp_path_factory, clock):
    with make_server(tmp_path_factory.mktemp("imap-login"), clock=clock) as srv:
        yield srv


@pytest.fixture(scope="module")
def user(server):
    return server.add_person("Trần Thị Bình", PLAIN_PASSWORD, birth_year=1985)


def expect_no(call, code):
    with pytest.raises(imaplib.IMAP4.error) as e:
        call()
    text = str(e.value)
    assert f"[{code}]" in text, text
    return text


def test_plain_port_disables_login_until_starttls(server, user):
    c = server.imap()
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    assert "AUTH=PLAIN" not in c.capabilities
    expect_no(lambda: c.login(user, PLAIN_PASSWORD), "PRIVACYREQUIRED")
    c.starttls(ssl_context=server.client_context())
    assert "LOGINDISABLED" not in c.capabilities and "STARTTLS" not in c.capabilities
    assert "AUTH=PLAIN" in c.capabilities
    typ, data = c.login(user, PLAIN_PASSWORD)
    assert typ == "OK" and b"[CAPABILITY IMAP4rev1" in data[0]
    c.logout()


def test_login_on_the_implicit_tls_port(server, user):
    def logins():
        return server.call(lambda app: _sample(app, "mailserver_logins_total", {"protocol": "imap"})) or 0

    before = logins()
    c = server.imaps()
    assert "AUTH=PLAIN" in c.capabilities
    assert c.login(user.split("@")[0], PLAIN_PASSWORD)[0] == "OK"  # a bare local part means the primary domain
    c.logout()
    assert logins() == before + 1  # counted for /metrics by the shared AuthService


async def _sample(app, name, labels):
    return app.metrics.registry.get_sample_value(name, labels)


def test_starttls_discards_pipelined_plaintext(server):
    """RFC 3501 §11.1: a command injected after STARTTLS in the same packet must not run."""
    ctx = server.client_context()
    with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\nb LOGOUT\r\n")
        assert f.readline().startswith(b"a OK")
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            tls.sendall(b"c NOOP\r\n")
            assert tf.readline().startswith(b"c OK")  # "b LOGOUT" never ran
            tls.sendall(b"d STARTTLS\r\n")
            assert tf.readline().startswith(b"d BAD")


def test_authenticate_plain_with_and_without_initial_response(server, user):
    c = server.imaps()
    assert "SASL-IR" in c.capabilities
    # imaplib sends the response after a "+" continuation.
    typ, _ = c.authenticate("PLAIN", lambda _: f"\0{user}\0{PLAIN_PASSWORD}".encode())
    assert typ == "OK"
    c.logout()
    # SASL-IR (RFC 4959): the response on the command line, no round trip.
    ir = base64.b64encode(f"{user}\0{user}\0{PLAIN_PASSWORD}".encode()).decode()
    with ssl_socket(server) as (s, f):
        s.sendall(f"a AUTHENTICATE PLAIN {ir}\r\n".encode())
        assert f.readline().startswith(b"a OK [CAPABILITY")
        s.sendall(b"b AUTHENTICATE PLAIN =\r\n")
        assert f.readline().startswith(b"b BAD")  # already authenticated


def test_authenticate_errors(server, user):
    with ssl_socket(server) as (s, f):
        s.sendall(b"a AUTHENTICATE PLAIN\r\n")
        assert f.readline() == b"+ \r\n"
        s.sendall(b"*\r\n")
        assert f.readline().startswith(b"a BAD AUTHENTICATE cancelled")
        s.sendall(b"b AUTHENTICATE PLAIN !!!notbase64\r\n")
        assert f.readline().startswith(b"b BAD invalid base64")
        s.sendall(b"c AUTHENTICATE CRAM-MD5\r\n")
        assert f.readline().startswith(b"c NO unsupported SASL mechanism")
        other = base64.b64encode(f"postmaster@phuyen.gov.vn\0{user}\0{PLAIN_PASSWORD}".encode()).decode()
        s.sendall(f"d AUTHENTICATE PLAIN {other}\r\n".encode())
        assert f.readline().startswith(b"d NO [AUTHORIZATIONFAILED]")


def test_utf8_password_in_a_literal(server):
    password = "Mật-khẩu#2026aA"
    addr = server.add_person("Lê Văn Cường", password, birth_year=1990)
    c = server.imaps()
    c.literal = password.encode()
    typ, _ = c._simple_command("LOGIN", addr)
    assert typ == "OK"
    c.logout()


def test_wrong_password_is_authenticationfailed_in_two_languages(server, user):
    c = server.imaps()
    text = expect_no(lambda: c.login(user, "Wrong#2026aA"), "AUTHENTICATIONFAILED")
    assert "invalid address or password" in text
    c.logout()


def test_suspended_account_gets_contactadmin(server):
    addr = server.add_person("Phạm Văn Dũng", PLAIN_PASSWORD, birth_year=1970)
    server.call(lambda app: app.directory.suspend(addr, "tài khoản bị lộ", actor="test"))
    c = server.imaps()
    text = expect_no(lambda: c.login(addr, PLAIN_PASSWORD), "CONTACTADMIN")
    assert "suspended" in text  # the reason, English / Vietnamese, UTF-8 (imaplib shows bytes)
    c.logout()


def test_revoked_account_gets_authorizationfailed(server):
    addr = server.add_person("Hoàng Văn Em", PLAIN_PASSWORD, birth_year=1960)
    server.call(lambda app: app.directory.revoke(addr, actor="test"))
    c = server.imaps()
    text = expect_no(lambda: c.login(addr, PLAIN_PASSWORD), "AUTHORIZATIONFAILED")
    assert "revoked" in text
    c.logout()


def test_must_change_and_expired_passwords_get_expired_with_the_page(server, clock):
    addr = server.add_person("Vũ Thị Giang", PLAIN_PASSWORD, birth_year=1992)
    server.call(lambda app: app.directory.set_password(addr, PLAIN_PASSWORD, must_change=True, actor="test"))
    c = server.imaps()
    text = expect_no(lambda: c.login(addr, PLAIN_PASSWORD), "EXPIRED")
    assert "/account" in text
    server.call(lambda app: app.directory.set_password(addr, PLAIN_PASSWORD, must_change=False, actor="test"))
    assert c.login(addr, PLAIN_PASSWORD)[0] == "OK"
    c.logout()
    clock.offset = timedelta(days=40)  # Đ13.3: passwords expire monthly
    try:
        c = server.imaps()
        text = expect_no(lambda: c.login(addr, PLAIN_PASSWORD), "EXPIRED")
        assert "expired" in text
        c.logout()
    finally:
        clock.offset = timedelta(0)


def test_send_locked_account_can_still_read(server, clock):
    """Đ5.3.b: after retirement sending is locked at once, but the mailbox stays readable."""
    addr = server.add_person("Đỗ Văn Hùng", PLAIN_PASSWORD, birth_year=1965)
    today = clock().date()
    server.call(lambda app: app.directory.retire(addr, today - timedelta(days=1), actor="test"))
    access = server.call(lambda app: _access(app, addr))
    assert access.state == "send-locked" and not access.may_send
    c = server.imaps()
    assert c.login(addr, PLAIN_PASSWORD)[0] == "OK"
    c.logout()


async def _access(app, addr):
    return app.directory.access(await app.directory.get_account(addr))


def test_failures_feed_the_shared_brute_force_limiter(server):
    """Five wrong passwords over IMAP block the next attempt from that client, for IMAP and SMTP alike."""
    addr = server.add_person("Ngô Thị Lan", PLAIN_PASSWORD, birth_year=1988)
    c = server.imaps()
    for i in range(5):
        expect_no(lambda i=i: c.login(addr, f"Wrong#{i}aA"), "AUTHENTICATIONFAILED")
    text = expect_no(lambda: c.login(addr, PLAIN_PASSWORD), "UNAVAILABLE")
    assert "try again in" in text
    c.logout()
    result = server.call(lambda app: app.auth.authenticate(addr, PLAIN_PASSWORD, client_ip="127.0.0.1",
                                                           protocol="smtp"))
    assert result.outcome == Outcome.blocked


def test_plaintext_login_allowed_on_loopback_when_configured(tmp_path):
    with make_server(tmp_path, imap_extra="allow_plaintext_login: true") as srv:
        addr = srv.add_person("Bùi Văn Khoa", PLAIN_PASSWORD, birth_year=1980)
        c = srv.imap()
        assert "LOGINDISABLED" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
        assert c.login(addr, PLAIN_PASSWORD)[0] == "OK"
        c.logout()


class ssl_socket:
    """A raw TLS socket to the IMAPS port, greeting consumed: for exact wire checks."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        raw = socket.create_connection(("127.0.0.1", self.server.ports["imaps"]), timeout=10)
        self.sock = self.server.client_context().wrap_socket(raw, server_hostname="localhost")
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK [CAPABILITY")
        return self.sock, self.file

    def __exit__(self, *exc):
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except (OSError, ssl.SSLError):
            pass
        self.sock.close()
