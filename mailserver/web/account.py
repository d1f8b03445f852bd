"""`/account`: sign in, see the mailbox, change the password (Đ6.3.c, Đ9, Đ13.3).

The page is where the mail protocols send users whose password is
temporary (Đ6.3.c: changed at the first login after an operator restore)
or older than a month (Đ13.3): `AuthService` with `Purpose.web` lets those
passwords in here, and nowhere else, while a suspended or revoked account
is refused here as everywhere (Đ6.1).

Every check runs on the server, whatever the page's script said: the Đ9
rules (`policy.passwords.check_password`, bilingual), both new passwords
equal, and the new password different from the current one. The current
password is verified through `AuthService.authenticate`, so guessing it on
this form counts in the same brute-force limiter as IMAP and SMTP. The
change itself goes through `AuthService.change_password`, which writes the
new hash, audits it (actor `web:<address> (<client IP>)`) and drops cached
verifications, so the new password works at once for every protocol.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from aiohttp import web

from mailserver.app import App
from mailserver.endpoints import client_endpoints
from mailserver.web.i18n import DEFAULT_LANG, LANGS, Lang, pick, t
from mailserver.web.pages import AccountView, account_page, error_page, signin_page
from mailserver.web.security import Cookies, Session, same_origin, tokens_match
from policy.errors import ValidationFailed
from policy.lockstate import Access
from policy.passwords import check_password, requirements
from storage.auth import Outcome, Purpose
from storage.records import Account

log = logging.getLogger("mailserver.web")

SIGNIN_STATUS = {
    Outcome.bad_credentials: 401,
    Outcome.blocked: 429,
    Outcome.suspended: 403,
    Outcome.revoked: 403,
}


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str = "/account") -> web.Response:
    """303 after a POST (and after choosing a language), so a reload never re-submits a form."""
    return web.Response(status=303, headers={"Location": location})


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


class AccountPages:
    def __init__(self, app: App, cookies: Cookies) -> None:
        self.app = app
        self.cookies = cookies

    # ------------------------------------------------------------------ helpers

    def lang(self, request: web.Request) -> Lang:
        value = request.cookies.get(self.cookies.lang_name)
        return value if value in LANGS else DEFAULT_LANG  # type: ignore[return-value]

    def now(self) -> float:
        return self.app.clock().timestamp()

    async def signed_in(self, request: web.Request) -> tuple[Session | None, Account | None, Access | None, bool]:
        """The session's account if it may still use the page; the flag says a session just ended."""
        session, expired = self.cookies.read_session(request, self.now())
        if session is None:
            return None, None, None, expired
        account = await self.app.directory.account_by_id(session.account_id)
        if account is None or self.cookies.signer.fingerprint(account.password_hash) != session.pw:
            return None, None, None, True  # password changed elsewhere: every other session ends
        access = self.app.directory.access(account)
        if not access.may_web_login:
            return None, None, None, True  # suspended or revoked since sign-in (Đ6.1)
        return session, account, access, False

    async def view(self, account: Account, access: Access) -> AccountView:
        tz = self.app.policy.tz
        unit = await self.app.directory.unit_by_id(account.unit_id)
        usage = await self.app.store.usage(account)  # exact, from the store's index (Đ7.3)
        return AccountView(
            address=account.address,
            name=account.display_name,
            unit_name=unit.name if unit else None,
            state=access.state,
            reason_vi=access.reason_vi,
            reason_en=access.reason_en,
            send_locked_on=access.send_locked_on,
            revoke_on=access.revoke_on,
            password_state=access.password,
            password_changed_at=account.password_changed_at.astimezone(tz) if account.password_changed_at else None,
            password_expires_at=access.password_expires_at.astimezone(tz) if access.password_expires_at else None,
            now=self.app.clock().astimezone(tz),
            quota=usage.quota,
            used=usage.bytes,
            endpoints=client_endpoints(self.app.settings),
        )

    async def render_account(self, lang: Lang, session: Session, account: Account, access: Access,
                             errors: list[str] | None = None, status: int = 200) -> web.Response:
        rules = self.app.policy.passwords
        flash = t(lang, session.flash) if session.flash else ""
        page = account_page(
            lang, await self.view(account, access), session.csrf,
            rules=requirements(rules), min_length=rules.min_length, max_length=rules.max_length,
            special=rules.special_characters, errors=errors, flash=flash,
        )
        response = html_response(page, status)
        # Sliding expiry: every page view renews the idle timer; a flash is shown once.
        self.cookies.write_session(response, replace(session, seen=self.now(), flash=""))
        return response

    def render_signin(self, request: web.Request, lang: Lang, *, address: str = "", error: str = "",
                      notice: str = "", status: int = 200) -> web.Response:
        token = self.cookies.anonymous_csrf(request) or secrets.token_urlsafe(24)
        response = html_response(signin_page(lang, token, address=address, error=error, notice=notice), status)
        self.cookies.write_anonymous_csrf(response, token)
        return response

    def refuse_forgery(self, lang: Lang) -> web.Response:
        return html_response(error_page(lang, t(lang, "csrf")), 403)

    # ------------------------------------------------------------------ handlers

    async def show(self, request: web.Request) -> web.StreamResponse:
        chosen = request.query.get("lang")
        if chosen in LANGS:
            response = see_other(request.path)
            self.cookies.write_lang(response, chosen)
            return response
        lang = self.lang(request)
        session, account, access, ended = await self.signed_in(request)
        if session and account and access:
            return await self.render_account(lang, session, account, access)
        notice = t(lang, "signed_out") if "signed-out" in request.query else ""
        response = self.render_signin(request, lang, notice=notice or (t(lang, "session_expired") if ended else ""))
        if ended:
            self.cookies.clear_session(response)
        return response

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        lang = self.lang(request)
        form = await request.post()
        if not same_origin(request) or not tokens_match(form.get("csrf"), self.cookies.anonymous_csrf(request)):
            return self.refuse_forgery(lang)
        address = str(form.get("address", "")).strip()
        password = str(form.get("password", ""))
        result = await self.app.auth.authenticate(
            address, password, client_ip=client_ip(request), protocol="web", purpose=Purpose.web
        )
        if not result.ok or result.account is None:
            log.info("web sign-in refused for %s from %s: %s", address, client_ip(request), result.outcome.value)
            return self.render_signin(request, lang, address=address, error=pick(lang, result.text_vi, result.text_en),
                                      status=SIGNIN_STATUS.get(result.outcome, 403))
        session = self.cookies.new_session(result.account.id, result.account.password_hash, self.now())
        response = see_other()
        self.cookies.write_session(response, session)
        # The pre-sign-in token is spent; the session carries its own from now on.
        self.cookies.write_anonymous_csrf(response, secrets.token_urlsafe(24))
        return response

    async def change_password(self, request: web.Request) -> web.StreamResponse:
        lang = self.lang(request)
        session, account, access, _ = await self.signed_in(request)
        if not (session and account and access):
            return see_other()
        form = await request.post()
        if not same_origin(request) or not tokens_match(form.get("csrf"), session.csrf):
            return self.refuse_forgery(lang)
        current, new, confirm = (str(form.get(k, "")) for k in ("current", "new", "confirm"))
        ip = client_ip(request)
        rules = self.app.policy.passwords

        # Form-level checks first: they cost no hashing and reveal nothing about the current password.
        errors = [pick(lang, v.vi, v.en) for v in check_password(new, rules, self.app.directory.hasher.byte_limit)]
        if new != confirm:
            errors.append(t(lang, "mismatch"))
        if new and new == current:
            errors.append(t(lang, "reuse"))
        if errors:
            return await self.refused(lang, session, account, access, errors, ip, "rules")

        result = await self.app.auth.authenticate(
            account.address, current, client_ip=ip, protocol="web", purpose=Purpose.web
        )
        if result.outcome == Outcome.bad_credentials:
            return await self.refused(lang, session, account, access, [t(lang, "wrong_current")], ip, "current")
        if not result.ok or result.account is None:
            # blocked by the limiter, or suspended since the page was shown
            return await self.refused(lang, session, account, access, [pick(lang, result.text_vi, result.text_en)],
                                      ip, result.outcome.value, status=SIGNIN_STATUS.get(result.outcome, 403))
        try:
            updated = await self.app.auth.change_password(
                result.account, current, new, actor=f"web:{account.address} ({ip})"
            )
        except ValidationFailed as e:  # the service's own checks (same rules); kept as the last word
            return await self.refused(lang, session, account, access, [e.message], ip, e.field or "rules")
        self.app.metrics.password_changes.labels(result="changed").inc()
        log.info("password changed for %s from %s (Đ9, Đ13.3)", account.address, ip)
        response = see_other()
        # The old session's fingerprint no longer matches; this browser gets a fresh session.
        self.cookies.write_session(
            response, self.cookies.new_session(updated.id, updated.password_hash, self.now(), flash="changed")
        )
        return response

    async def refused(self, lang: Lang, session: Session, account: Account, access: Access, errors: list[str],
                      ip: str, why: str, status: int = 400) -> web.Response:
        self.app.metrics.password_changes.labels(result="refused").inc()
        log.info("password change refused for %s from %s: %s", account.address, ip, why)
        return await self.render_account(lang, session, account, access, errors=errors, status=status)

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        lang = self.lang(request)
        session, _, _, _ = await self.signed_in(request)
        form = await request.post()
        if session is not None and (not same_origin(request) or not tokens_match(form.get("csrf"), session.csrf)):
            return self.refuse_forgery(lang)
        response = see_other("/account?signed-out")
        self.cookies.clear_session(response)
        return response
