"""/account over HTTP: sign-in rules (Đ6.1, Đ6.3.c, Đ13.3), password change (Đ9), sessions, CSRF, cookies, headers.

The aiohttp application runs in the test's loop on a real socket
(tests/webtest.py) so the App's clock can be moved; the browser test
(test_web_browser.py) drives the same pages through `mailserver serve`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailserver.app import App
from policy.loader import load
from storage.auth import Outcome, Purpose
from storage.directory import PersonRequest
from tests.helpers import write_config
from tests.webtest import NEW_PW, PW, running_web

pytestmark = pytest.mark.asyncio


async def person(app, name="Nguyễn Văn A", **kw):
    kw.setdefault("password", PW)
    return (await app.directory.add_person(PersonRequest(name=name, unit="stttt", **kw), actor="t")).account


async def mail_login(app, address, password):
    """What IMAP LOGIN and SMTP AUTH ask the one authentication service."""
    return await app.auth.authenticate(address, password, client_ip="192.0.2.9", protocol="imap",
                                       purpose=Purpose.mail)


# ---------------------------------------------------------------- language


async def test_vietnamese_by_default_with_diacritics_and_english_on_request(app):
    async with running_web(app) as w, w.client() as c:
        page = await c.get("/account")
        assert page.status == 200
        assert '<html lang="vi">' in page.text
        assert "Đăng nhập" in page.text and "Địa chỉ thư điện tử" in page.text and "Mật khẩu" in page.text
        assert "Thư điện tử công vụ tỉnh Phú Yên" in page.text
        assert 'name="viewport" content="width=device-width' in page.text  # usable on a phone
        switched = await c.get("/account?lang=en")
        assert switched.url.endswith("/account")
        assert '<html lang="en">' in switched.text and "Sign in" in switched.text and "Email address" in switched.text
        assert "Đăng nhập" not in switched.text
        back = await c.get("/account?lang=vi")
        assert '<html lang="vi">' in back.text


# ---------------------------------------------------------------- sign-in


async def test_sign_in_shows_quota_password_age_expiry_and_state(app):
    acc = await person(app)
    await app.store.deliver(acc, b"From: a@example.org\r\nSubject: x\r\n\r\n" + b"x" * 1_500_000 + b"\r\n")
    usage = await app.store.usage(acc)
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, PW)
        assert page.status == 200 and page.url.endswith("/account")
        assert acc.address in page.text and "Nguyễn Văn A" in page.text
        assert page.by_id("state") == "Đang hoạt động"
        # Đ7.3: used of quota, exact from the store, 2 GiB by default (Đ7.3.b); Vietnamese decimal commas
        assert page.by_id("quota") == "Đã dùng 1,4 MiB trên 2 GiB (0,1 %)"
        assert f'<progress id="quota-bar" max="{2 * 1024**3}" value="{usage.bytes}">' in page.text
        assert page.by_id("password-age") == "28/11/2026 (0 ngày trước)"
        # Đ13.3: one calendar month after the change (the policy's time zone)
        assert page.by_id("password-expires") == "28/12/2026 (còn 30 ngày)"
        assert "id=\"forced\"" not in page.text
        # the client settings come from the configuration
        imaps = app.settings.listeners.imaps.port
        assert f"{app.settings.hostname} : {imaps} · SSL/TLS" in page.text


async def test_send_locked_account_signs_in_and_sees_why(app):
    """Đ5.3.b: a retired staff member may still log in (and read), but sending is locked, with the reason."""
    acc = await person(app)
    await app.directory.retire(acc.address, app.clock().date(), actor="t")
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, PW)
        assert page.by_id("state") == "Đã khóa chức năng gửi thư"
        assert "Điều 5.3.b" in page.by_id("state-reason")
        assert "Thu hồi hộp thư vào ngày 28/05/2027" in page.text


async def test_wrong_password_is_refused_in_both_languages(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, "Sai@mat123")
        assert page.status == 401
        assert page.by_id("error") == "sai địa chỉ hoặc mật khẩu"
        assert f'value="{acc.address}"' in page.text  # the address is kept, the password is not
        await c.get("/account?lang=en")
        page = await c.sign_in(acc.address, "Sai@mat123")
        assert page.by_id("error") == "invalid address or password"


async def test_failed_sign_ins_count_in_the_shared_limiter(app):
    """Đ6.2.b: the web form is one more door for password guessing; the one limiter watches it too."""
    acc = await person(app)
    limit = app.policy.auth.max_failures_per_ip_account
    async with running_web(app) as w, w.client() as c:
        for i in range(limit):
            assert (await c.sign_in(acc.address, f"Wrong@{i}xyz")).status == 401
        blocked = await c.sign_in(acc.address, PW)  # even the right password, while blocked
        assert blocked.status == 429
        assert "đăng nhập sai quá nhiều lần" in blocked.by_id("error")
    # the block is shared: the same client is blocked for the account on the mail protocols too
    assert app.auth.limiter.check("127.0.0.1", acc.address) is not None
    entries = await app.directory.audit_entries(target=acc.address)
    assert any(e.action == "auth.block" and e.after["protocol"] == "web" for e in entries)


async def test_suspended_and_revoked_accounts_never_sign_in(app):
    """Đ6.1: a suspended mailbox cannot be used, not even the password page; nor a revoked one (Đ5.3.b)."""
    a = await person(app)
    b = await person(app, "Trần Thị Bình")
    await app.directory.suspend(a.address, "lộ mật khẩu (Đ6.2.b)", actor="t")
    await app.directory.revoke(b.address, actor="t")
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(a.address, PW)
        assert page.status == 403
        assert "tạm khóa" in page.by_id("error") and "lộ mật khẩu" in page.by_id("error")
        assert "id=\"change\"" not in page.text
        page = await c.sign_in(b.address, PW)
        assert page.status in (401, 403) and 'id="change"' not in page.text


async def test_must_change_after_restore_signs_in_and_is_told_to_change(app):
    """Đ6.3.c: after an operator restores a suspended mailbox the user must change the temporary password."""
    acc = await person(app)
    await app.directory.suspend(acc.address, "virus", actor="t")
    acc, temp = await app.directory.restore(acc.address, actor="ops")
    assert (await mail_login(app, acc.address, temp)).outcome == Outcome.must_change
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, temp)
        assert page.status == 200
        assert "Điều 6.3.c" in page.by_id("forced")
        assert page.by_id("password-expires") == "Ngay bây giờ: đây là mật khẩu tạm thời"
        # the change form comes before the status when a change is forced
        assert page.text.index('id="change-section"') < page.text.index("Hộp thư của bạn")
        done = await c.change(temp, NEW_PW)
        assert done.status == 200 and "Đã đổi mật khẩu" in done.by_id("flash")
        assert 'id="forced"' not in done.text
    # the new password works at once for the mail protocols; the temporary one no longer does
    assert (await mail_login(app, acc.address, NEW_PW)).ok
    assert (await mail_login(app, acc.address, temp)).outcome == Outcome.bad_credentials


async def test_monthly_expiry_signs_in_and_the_change_reopens_mail(app, clock):
    """Đ13.3: a password older than a month stops IMAP/SMTP but still opens the page to change it."""
    acc = await person(app)
    clock.now += timedelta(days=40)
    assert (await mail_login(app, acc.address, PW)).outcome == Outcome.password_expired
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, PW)
        assert page.status == 200 and "Điều 13.3" in page.by_id("forced")
        assert page.by_id("password-expires") == "28/12/2026 (đã hết hạn)"
        assert page.by_id("password-age") == "28/11/2026 (40 ngày trước)"
        done = await c.change(PW, NEW_PW)
        assert "Đã đổi mật khẩu" in done.by_id("flash")
        assert page.by_id("forced") and not done.by_id("forced")
        assert done.by_id("password-expires") == "07/02/2027 (còn 31 ngày)"
    assert (await mail_login(app, acc.address, NEW_PW)).ok


# ---------------------------------------------------------------- password change


async def test_weak_password_is_refused_with_every_broken_rule(app):
    """Đ9: at least 8 characters, upper, lower, digit and one of ! @ # % $ * &; all failures are listed."""
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        page = await c.change(PW, "abc")
        assert page.status == 400
        errors = page.by_id("errors")
        for text in ("Mật khẩu phải có ít nhất 8 ký tự", "Cần ít nhất một chữ in hoa", "Cần ít nhất một chữ số",
                     "Cần ít nhất một ký tự đặc biệt (! @ # % $ * &)"):
            assert text in errors
        assert "chữ thường" not in errors  # "abc" has lower-case letters
        await c.get("/account?lang=en")
        page = await c.change(PW, "abcdefgh1")
        errors = page.by_id("errors")
        assert "an upper-case letter" in errors and "a special character" in errors
        assert "at least 8 characters" not in errors
    assert (await mail_login(app, acc.address, PW)).ok  # nothing changed


async def test_reuse_of_the_current_password_is_refused(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        page = await c.change(PW, PW)
        assert page.status == 400
        assert "Mật khẩu mới phải khác mật khẩu hiện tại" in page.by_id("errors")


async def test_mismatched_confirmation_and_wrong_current_password_are_refused(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        page = await c.change(PW, NEW_PW, NEW_PW + "x")
        assert "Hai lần nhập mật khẩu mới không giống nhau" in page.by_id("errors")
        page = await c.change("Wrong@123x", NEW_PW)
        assert page.status == 400 and "Mật khẩu hiện tại không đúng" in page.by_id("errors")
    # a wrong current password is a failed login for the limiter
    assert app.auth.limiter.failures("ip-account", f"127.0.0.1 {acc.address}") == 1
    assert (await mail_login(app, acc.address, PW)).ok


async def test_successful_change_is_audited_logged_counted_and_works_at_once(app, caplog):
    acc = await person(app)
    assert (await mail_login(app, acc.address, PW)).ok  # cached in the authentication service
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        with caplog.at_level("INFO", logger="mailserver.web"):
            done = await c.change(PW, NEW_PW)
        assert done.status == 200 and done.url.endswith("/account")
        assert "Đã đổi mật khẩu" in done.by_id("flash")
        again = await c.get("/account")
        assert not again.by_id("flash")  # shown once
    entries = await app.directory.audit_entries(target=acc.address)
    change = next(e for e in entries if e.action == "account.password-change")
    assert change.actor == f"web:{acc.address} (127.0.0.1)" and "Đ9" in change.rule
    assert "password_hash" not in change.after  # never the hash in the audit log
    assert f"password changed for {acc.address} from 127.0.0.1" in caplog.text
    assert NEW_PW not in caplog.text and PW not in caplog.text
    assert app.metrics.password_changes.labels(result="changed")._value.get() == 1
    assert (await mail_login(app, acc.address, NEW_PW)).ok
    assert (await mail_login(app, acc.address, PW)).outcome == Outcome.bad_credentials


# ---------------------------------------------------------------- sessions


async def test_session_expires_after_idle_time(app, clock):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        clock.now += timedelta(minutes=10)
        assert 'id="change"' in (await c.get("/account")).text  # activity renews the session
        clock.now += timedelta(minutes=14)
        assert 'id="change"' in (await c.get("/account")).text
        clock.now += timedelta(minutes=16)
        page = await c.get("/account")
        assert 'id="change"' not in page.text
        assert "Phiên làm việc đã hết hạn" in page.by_id("notice")


async def test_session_lasts_eight_hours_at_most(app, clock):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        for _ in range(34):  # active every 14 minutes for 7 h 56 min
            clock.now += timedelta(minutes=14)
            assert 'id="change"' in (await c.get("/account")).text
        clock.now += timedelta(minutes=14)
        assert 'id="change"' not in (await c.get("/account")).text


async def test_a_password_change_ends_the_other_sessions(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as phone, w.client() as office:
        await phone.sign_in(acc.address, PW)
        await office.sign_in(acc.address, PW)
        await office.change(PW, NEW_PW)
        assert 'id="change"' in (await office.get("/account")).text
        assert 'id="change"' not in (await phone.get("/account")).text


async def test_suspension_ends_an_open_session(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.sign_in(acc.address, PW)
        await app.directory.suspend(acc.address, "Đ6.2.b", actor="t")
        page = await c.get("/account")
        assert 'id="change"' not in page.text


async def test_sign_out(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        page = await c.sign_in(acc.address, PW)
        out = await c.post("/account/signout", {"csrf": page.csrf})
        assert "Bạn đã đăng xuất" in out.by_id("notice")
        assert 'id="change"' not in (await c.get("/account")).text


async def test_a_tampered_session_cookie_is_ignored(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c, w.client() as copy, w.client() as forger:
        await c.sign_in(acc.address, PW)
        token = next(m.value for m in c.session.cookie_jar if m.key == "session")
        body, mac = token.split(".")
        # the same cookie presented by another client works (it is a bearer token) ...
        assert 'id="change"' in (await copy.get("/account", headers={"Cookie": f"session={token}"})).text
        # ... but one changed character in the signed part does not
        flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
        page = await forger.get("/account", headers={"Cookie": f"session={flipped}.{mac}"})
        assert 'id="change"' not in page.text and 'id="signin"' in page.text


# ---------------------------------------------------------------- CSRF


async def test_every_form_needs_its_csrf_token(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        await c.get("/account")
        refused = await c.post("/account/signin", {"address": acc.address, "password": PW})
        assert refused.status == 403 and "tải lại trang" in refused.by_id("error")
        refused = await c.post("/account/signin", {"csrf": "forged", "address": acc.address, "password": PW})
        assert refused.status == 403
        page = await c.sign_in(acc.address, PW)
        token = page.csrf
        for form in ({}, {"csrf": "forged"}):
            r = await c.post("/account/password", {**form, "current": PW, "new": NEW_PW, "confirm": NEW_PW})
            assert r.status == 403
        r = await c.post("/account/signout", {"csrf": "forged"})
        assert r.status == 403
        # a cross-site POST is refused even with a valid token
        r = await c.post("/account/password", {"csrf": token, "current": PW, "new": NEW_PW, "confirm": NEW_PW},
                         headers={"Origin": "https://evil.example"})
        assert r.status == 403
    assert (await mail_login(app, acc.address, PW)).ok  # the password was never changed


async def test_another_users_token_does_not_work(app):
    a = await person(app)
    b = await person(app, "Lê Văn Cường")
    async with running_web(app) as w, w.client() as ca, w.client() as cb:
        token_a = (await ca.sign_in(a.address, PW)).csrf
        await cb.sign_in(b.address, PW)
        r = await cb.post("/account/password", {"csrf": token_a, "current": PW, "new": NEW_PW, "confirm": NEW_PW})
        assert r.status == 403


# ---------------------------------------------------------------- cookies and headers


def cookie_attrs(raw: list[str], name: str) -> str:
    return next(c for c in raw if c.startswith(name + "="))


async def test_cookies_and_headers_on_plain_http_loopback(app):
    acc = await person(app)
    async with running_web(app) as w, w.client() as c:
        page = await c.get("/account")
        h = page.headers
        assert h["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in h  # HSTS only over TLS
        assert h["Server"] == "mailserver"
        csrf = cookie_attrs(page.cookies, "csrf")
        assert "HttpOnly" in csrf and "SameSite=Strict" in csrf and "Secure" not in csrf
        signed = await c.sign_in(acc.address, PW)
        session = cookie_attrs(signed.cookies, "session")
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
        static = await c.get("/static/account.js")
        assert static.status == 200 and "Content-Security-Policy" in static.headers
        assert "eval(" not in static.text and "innerHTML" not in static.text


async def test_cookies_and_headers_over_tls(app, tmp_path):
    acc = await person(app)
    async with running_web(app, tls=True, cert_dir=tmp_path) as w, w.client() as c:
        page = await c.get("/account")
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        csrf = cookie_attrs(page.cookies, "__Host-csrf")
        assert "Secure" in csrf and "HttpOnly" in csrf and "Domain" not in csrf
        signed = await c.sign_in(acc.address, PW)
        assert signed.url.startswith("https://") and 'id="change"' in signed.text
        session = cookie_attrs(signed.cookies, "__Host-session")
        assert "Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session


async def test_unknown_pages_are_a_bilingual_404(app):
    async with running_web(app) as w, w.client() as c:
        page = await c.get("/nowhere")
        assert page.status == 404 and "Không tìm thấy trang" in page.text
        assert (await c.get("/static/")).status in (403, 404)  # no directory listing
        root = await c.get("/", follow=False)
        assert root.status == 302 and root.headers["Location"] == "/account"


async def test_the_checklist_follows_the_policy_file(tmp_path):
    """Đ9's numbers live in policy.yaml: a stricter policy changes the page and its script's data, not code."""
    # continues the `passwords:` section that tests/helpers.py starts (cheap hashing)
    cfg = write_config(tmp_path, policy="  min_length: 12\n  require_special: false\n")
    app = await App.open(loaded=load(cfg))
    try:
        await app.directory.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="t")
        acc = await person(app, password="Matkhau12345x")
        async with running_web(app) as w, w.client() as c:
            page = await c.sign_in(acc.address, "Matkhau12345x")
            assert 'data-min="12"' in page.text
            assert "Mật khẩu phải có ít nhất 12 ký tự" in page.text
            assert 'data-rule="special"' not in page.text
            refused = await c.change("Matkhau12345x", "Ngan@1234")
            assert "Mật khẩu phải có ít nhất 12 ký tự" in refused.by_id("errors")
    finally:
        await app.close()
