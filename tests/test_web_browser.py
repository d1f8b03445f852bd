"""The password page in a real browser (Debian Chromium, headless) against `mailserver serve` over TLS.

A user with a temporary password (Đ6.3.c) signs in, types a weak password
and sees the Đ9 checklist react, submits it anyway and is refused with the
right messages, then sets a good one; afterwards the new password works
through every protocol the server serves and the old one through none
(tests/logins.py). A user whose password is more than a month old (Đ13.3)
goes through the same page. The page is Vietnamese by default, switches to
English, fits a phone screen and runs its script under the strict CSP.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page

from tests.browser import chromium
from tests.helpers import cli, write_config
from tests.logins import login_everywhere
from tests.server import ServerProcess

NEW_PW = "Phuyen#2026moi"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    cfg = write_config(base, extra="clamd: {socket: null}\n")
    cfg.write_text(cfg.read_text().replace(", tls: false}", "}"))  # production shape: TLS on the web listener
    cli(cfg, "init", check=True)
    srv = ServerProcess(cfg).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Browser:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    # The server's certificate is self-signed; urllib tests verify it, the browser just accepts it.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844},
                                  locale="vi-VN")
    pg = context.new_page()
    pg.console_messages = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.console_messages.append(m.text))  # type: ignore[attr-defined]
    yield pg
    context.close()


def add_account(server: ServerProcess, name: str, *extra: str, password: str | None = None) -> dict:
    args = ["account", "add", "--name", name, "--unit", "stttt", "--json", *extra]
    if password:
        args.append("--password-stdin")
    return json.loads(cli(server.config, *args, input=(password + "\n") if password else None, check=True).stdout)


def sign_in(page: Page, server: ServerProcess, address: str, password: str) -> None:
    page.goto(f"{server.web_url}/account")
    page.fill("#address", address)
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_selector("#change")


def rule_states(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#rules li[data-rule]",
        "items => Object.fromEntries(items.map(li => [li.dataset.rule,"
        " li.classList.contains('met') ? 'met' : li.classList.contains('unmet') ? 'unmet' : '']))",
    )


def test_forced_change_weak_password_refused_then_new_password_works_everywhere(server, page):
    """Đ6.3.c first login with a temporary password; Đ9 rules while typing and on the server."""
    acc = add_account(server, "Nguyễn Thị Mai")
    address, temp = acc["address"], acc["temporary_password"]
    # the temporary password opens the password page and nothing else
    first = login_everywhere(server, address, temp)
    assert first["web"].ok and not [a for name, a in first.items() if name != "web" and a.ok], first

    sign_in(page, server, address, temp)
    assert "Điều 6.3.c" in page.inner_text("#forced")
    assert page.inner_text("h1") == "Tài khoản thư điện tử"

    page.fill("#current", temp)
    page.fill("#new", "matkhau")
    page.fill("#confirm", "matkhau")
    assert rule_states(page) == {
        "min_length": "unmet", "upper": "unmet", "lower": "met", "digit": "unmet", "special": "unmet",
        "confirm": "met", "differs": "met",
    }
    page.click("#change-button")
    page.wait_for_selector("#errors")
    errors = page.inner_text("#errors")
    for text in ("Chưa đổi được mật khẩu", "Mật khẩu phải có ít nhất 8 ký tự", "Cần ít nhất một chữ in hoa",
                 "Cần ít nhất một chữ số", "Cần ít nhất một ký tự đặc biệt (! @ # % $ * &)"):
        assert text in errors
    assert "chữ thường" not in errors
    assert "Điều 6.3.c" in page.inner_text("#forced")  # still temporary

    page.fill("#current", temp)
    page.fill("#new", NEW_PW)
    page.fill("#confirm", NEW_PW)
    assert set(rule_states(page).values()) == {"met"}
    page.click("#change-button")
    page.wait_for_selector("#flash")
    assert "Đã đổi mật khẩu" in page.inner_text("#flash")
    assert page.query_selector("#forced") is None
    assert "còn" in page.inner_text("#password-expires")  # Đ13.3: a month from now

    after = login_everywhere(server, address, NEW_PW)
    # the new password works at once for every protocol, SMTP AUTH on 587 and 465 included
    assert {"web", "imap", "imaps", "submission", "submissions"} <= set(after), after
    assert all(a.ok for a in after.values()), after
    before = login_everywhere(server, address, temp)
    assert not any(a.ok for a in before.values()), before
    assert not [m for m in page.console_messages if "Content Security Policy" in m]  # type: ignore[attr-defined]


def test_expired_password_is_changed_on_the_page(server, page):
    """Đ13.3: a password older than a month still opens the page, which asks for a new one."""
    two_months_ago = (datetime.now(UTC) - timedelta(days=62)).strftime("%Y-%m-%dT%H:%M")
    acc = add_account(server, "Võ Văn Đức", "--now", two_months_ago, password="Cu@matkhau1")
    sign_in(page, server, acc["address"], "Cu@matkhau1")
    assert "Điều 13.3" in page.inner_text("#forced")
    assert "đã hết hạn" in page.inner_text("#password-expires")
    page.fill("#current", "Cu@matkhau1")
    page.fill("#new", "Cu@matkhau1")
    page.fill("#confirm", "Cu@matkhau1")
    assert rule_states(page)["differs"] == "unmet"
    page.click("#change-button")
    page.wait_for_selector("#errors")
    assert "Mật khẩu mới phải khác mật khẩu hiện tại" in page.inner_text("#errors")
    page.fill("#current", "Cu@matkhau1")
    page.fill("#new", NEW_PW)
    page.fill("#confirm", NEW_PW)
    page.click("#change-button")
    page.wait_for_selector("#flash")
    assert page.query_selector("#forced") is None
    assert all(a.ok for a in login_everywhere(server, acc["address"], NEW_PW).values())


def test_english_switch_phone_layout_and_sign_out(server, page):
    acc = add_account(server, "Đặng Văn Ánh", password="Dang@anh123")
    page.goto(f"{server.web_url}/account")
    assert page.get_attribute("html", "lang") == "vi"
    assert page.inner_text("label[for=address]") == "Địa chỉ thư điện tử"
    page.click("#lang")
    page.wait_for_selector("html[lang=en]")
    assert page.inner_text("label[for=address]") == "Email address"
    page.fill("#address", acc["address"])
    page.fill("#password", "wrong")
    page.click("#signin")
    assert page.inner_text("#error") == "invalid address or password"
    page.fill("#password", "Dang@anh123")
    page.click("#signin")
    page.wait_for_selector("#change")
    assert page.inner_text("#state") == "Active"
    assert page.inner_text("#quota") == "0 B of 2 GiB used (0.0 %)"
    assert page.get_attribute("#quota-bar", "max") == str(2 * 1024**3)
    page.fill("#new", "x")
    assert rule_states(page)["min_length"] == "unmet"  # the script runs under the CSP
    # usable on a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["__Host-session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    page.click("#signout")
    page.wait_for_selector("#notice")
    assert page.inner_text("#notice") == "You have signed out."
    assert "__Host-session" not in {c["name"] for c in page.context.cookies()}
