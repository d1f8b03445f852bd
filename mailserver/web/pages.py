"""HTML of the account pages: a few small pages, so plain functions with escaping, no template engine.

Every value that comes from a user or the directory goes through `esc()`.
The pages load one stylesheet and one script from `/static/` (no CDN, no
inline code: the Content-Security-Policy forbids both) and work without the
script; the script only checks the Đ9 rules while the user types.
Designed for a phone first: one column, large inputs, nothing wider than
the screen.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime

from mailserver.endpoints import Endpoint
from mailserver.web.i18n import Lang, fmt_date, fmt_percent, fmt_size, pick, t
from policy.lockstate import LockState, PasswordState
from policy.passwords import Violation


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def layout(lang: Lang, title: str, body: str) -> str:
    other = "en" if lang == "vi" else "vi"
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · {esc(t(lang, "site"))}</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/account.css">
<script src="/static/account.js" defer></script>
</head>
<body>
<header>
<span class="site">{esc(t(lang, "site"))}</span>
<a class="lang" id="lang" href="?lang={other}" hreflang="{other}" lang="{other}">{esc(t(lang, "switch_to"))}</a>
</header>
<main>
{body}
</main>
<footer>{esc(t(lang, "regulation"))}</footer>
</body>
</html>
"""


def message(kind: str, text: str, element_id: str) -> str:
    role = "alert" if kind == "error" else "status"
    return f'<div class="msg {kind}" id="{element_id}" role="{role}">{esc(text)}</div>'


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


# ---------------------------------------------------------------------- sign-in


def signin_page(lang: Lang, csrf: str, *, address: str = "", error: str = "", notice: str = "") -> str:
    body = f"""<h1>{esc(t(lang, "signin_title"))}</h1>
<p>{esc(t(lang, "signin_intro"))}</p>
{message("error", error, "error") if error else ""}{message("info", notice, "notice") if notice else ""}
<form method="post" action="/account/signin" class="card">
{csrf_field(csrf)}
<label for="address">{esc(t(lang, "address"))}</label>
<input id="address" name="address" type="text" inputmode="email" autocomplete="username" autocapitalize="none"
 spellcheck="false" required value="{esc(address)}">
<label for="password">{esc(t(lang, "password"))}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="signin">{esc(t(lang, "signin_button"))}</button>
</form>
<p class="hint">{esc(t(lang, "lost_password"))}</p>"""
    return layout(lang, t(lang, "signin_title"), body)


# ---------------------------------------------------------------------- account


@dataclass(frozen=True)
class AccountView:
    """What the account page shows, already computed (the page itself decides nothing)."""

    address: str
    name: str
    unit_name: str | None
    state: LockState
    reason_vi: str
    reason_en: str
    send_locked_on: date | None
    revoke_on: date | None
    password_state: PasswordState
    password_changed_at: datetime | None  # in the policy's time zone
    password_expires_at: datetime | None
    now: datetime
    quota: int
    used: int  # bytes, exact, from the mail store
    endpoints: list[Endpoint]


def _days(later: datetime, earlier: datetime) -> int:
    return (later.date() - earlier.date()).days


def _status(lang: Lang, v: AccountView) -> str:
    rows = [(t(lang, "address"), esc(v.address)), (t(lang, "name"), esc(v.name))]
    if v.unit_name and v.unit_name != v.name:
        rows.append((t(lang, "unit"), esc(v.unit_name)))
    state = f'<span class="state state-{v.state.value}" id="state">{esc(t(lang, "state_" + v.state.value))}</span>'
    reason = pick(lang, v.reason_vi, v.reason_en)
    if reason:
        state += f'<br><span class="reason" id="state-reason">{esc(reason)}</span>'
    if v.send_locked_on and v.state == LockState.active:
        state += f"<br>{esc(t(lang, 'send_lock_on', date=fmt_date(lang, v.send_locked_on)))}"
    if v.revoke_on:
        state += f"<br>{esc(t(lang, 'revoke_on', date=fmt_date(lang, v.revoke_on)))}"
    rows.append((t(lang, "state"), state))

    percent = 100.0 * v.used / v.quota if v.quota else 100.0
    text = t(lang, "quota_used", used=fmt_size(lang, v.used), quota=fmt_size(lang, v.quota),
             percent=fmt_percent(lang, percent))
    quota = (f'<progress id="quota-bar" max="{v.quota}" value="{min(v.used, v.quota)}"></progress>'
             f'<br><span id="quota">{esc(text)}</span>')
    rows.append((t(lang, "quota"), quota))

    if v.password_changed_at is not None:
        age = t(lang, "days_ago", date=fmt_date(lang, v.password_changed_at),
                days=max(0, _days(v.now, v.password_changed_at)))
        rows.append((t(lang, "password_age"), f'<span id="password-age">{esc(age)}</span>'))
    if v.password_expires_at is not None:
        left = _days(v.password_expires_at, v.now)
        when = fmt_date(lang, v.password_expires_at)
        text = {
            PasswordState.ok: t(lang, "days_left", date=when, days=left),
            PasswordState.expired: t(lang, "expired_on", date=when),
            PasswordState.must_change: t(lang, "change_now"),
        }[v.password_state]
        rows.append((t(lang, "password_expires"), f'<span id="password-expires">{esc(text)}</span>'))
    cells = "\n".join(f"<tr><th>{esc(k)}</th><td>{val}</td></tr>" for k, val in rows)
    return f"""<section class="card">
<h2>{esc(t(lang, "status_title"))}</h2>
<table class="status">
{cells}
</table>
</section>"""


def _change_form(lang: Lang, v: AccountView, csrf: str, rules: list[Violation], min_length: int,
                 max_length: int, special: str, errors: list[str]) -> str:
    items = "\n".join(
        f'<li data-rule="{esc(r.code)}">{esc(pick(lang, r.vi, r.en))}</li>' for r in rules
    )
    error_block = ""
    if errors:
        lis = "".join(f"<li>{esc(e)}</li>" for e in errors)
        error_block = (f'<div class="msg error" id="errors" role="alert"><p>{esc(t(lang, "errors_title"))}</p>'
                       f"<ul>{lis}</ul></div>")
    return f"""<section class="card" id="change-section">
<h2>{esc(t(lang, "change_title"))}</h2>
{error_block}
<form method="post" action="/account/password" id="change">
{csrf_field(csrf)}
<input type="text" name="username" autocomplete="username" value="{esc(v.address)}" hidden>
<label for="current">{esc(t(lang, "current_password"))}</label>
<input id="current" name="current" type="password" autocomplete="current-password" required>
<label for="new">{esc(t(lang, "new_password"))}</label>
<input id="new" name="new" type="password" autocomplete="new-password" required aria-describedby="rules">
<label for="confirm">{esc(t(lang, "confirm_password"))}</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password" required>
<p class="rules-intro">{esc(t(lang, "rules_intro"))}</p>
<ul id="rules" class="rules" aria-live="polite" data-min="{min_length}" data-max="{max_length}"
 data-special="{esc(special)}">
{items}
<li data-rule="confirm">{esc(t(lang, "rule_confirm"))}</li>
<li data-rule="differs">{esc(t(lang, "rule_differs"))}</li>
</ul>
<label class="inline"><input type="checkbox" id="show"> {esc(t(lang, "show_passwords"))}</label>
<button type="submit" id="change-button">{esc(t(lang, "change_button"))}</button>
</form>
</section>"""


def _setup(lang: Lang, endpoints: list[Endpoint]) -> str:
    def rows(kind: str) -> str:
        return "".join(
            f"<li>{esc(e.host)} : {e.port} · {esc(t(lang, e.security))}</li>" for e in endpoints if e.kind == kind
        )

    return f"""<section class="card" id="setup">
<h2>{esc(t(lang, "setup_title"))}</h2>
<p>{esc(t(lang, "setup_intro"))}</p>
<h3>{esc(t(lang, "setup_incoming"))}</h3><ul>{rows("imap")}</ul>
<h3>{esc(t(lang, "setup_outgoing"))}</h3><ul>{rows("smtp")}</ul>
<p>{esc(t(lang, "setup_username"))}</p>
</section>"""


def account_page(lang: Lang, v: AccountView, csrf: str, *, rules: list[Violation], min_length: int,
                 max_length: int, special: str, errors: list[str] | None = None, flash: str = "") -> str:
    banner = ""
    if v.password_state == PasswordState.must_change:
        banner = message("warning", t(lang, "must_change"), "forced")
    elif v.password_state == PasswordState.expired:
        banner = message("warning", t(lang, "expired"), "forced")
    change = _change_form(lang, v, csrf, rules, min_length, max_length, special, errors or [])
    status = _status(lang, v)
    # A forced change comes first: it is the only thing the user can usefully do.
    sections = [change, status] if banner else [status, change]
    body = f"""<h1>{esc(t(lang, "account_title"))}</h1>
{message("success", flash, "flash") if flash else ""}
{banner}
{sections[0]}
{sections[1]}
{_setup(lang, v.endpoints)}
<form method="post" action="/account/signout" class="signout">
{csrf_field(csrf)}
<button type="submit" class="secondary" id="signout">{esc(t(lang, "signout_button"))}</button>
</form>"""
    return layout(lang, t(lang, "account_title"), body)


def error_page(lang: Lang, text: str) -> str:
    body = f"""{message("error", text, "error")}
<p><a href="/account">{esc(t(lang, "back"))}</a></p>"""
    return layout(lang, text, body)
