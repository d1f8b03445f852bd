"""Who may log in, send and receive: the lock-state table, computed at every check.

| state       | login | send | receive |
|-------------|-------|------|---------|
| active      | yes   | yes  | yes     |
| send-locked | yes   | no   | yes     |  Đ5.3.b retirement
| suspended   | no    | no   | yes     |  Đ6.1: "vẫn có thể nhận thư"
| revoked     | no    | no   | no      |  Đ5.3.b revocation: unknown user

The state is derived from stored facts and the current time, never stored as
a result: a retirement dated today locks sending today, not at the next job
run. Password state is separate: an expired (Đ13.3) or must-change (Đ6.3.c)
password stops protocol logins but still lets the user into the web page
where the password is changed.

This module is the one place the rule "a locked mailbox cannot send" lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from policy.calendar import local_date
from policy.model import Policy
from policy.retirement import Role, retirement_schedule


class LockState(StrEnum):
    active = "active"
    send_locked = "send-locked"
    suspended = "suspended"
    revoked = "revoked"


class PasswordState(StrEnum):
    ok = "ok"
    must_change = "must-change"
    expired = "expired"


@dataclass(frozen=True)
class AccountFacts:
    """What the directory stores about an account that decides its access."""

    is_person: bool
    role: Role
    retired_on: date | None = None
    suspended_reason: str | None = None
    revoked_at: datetime | None = None
    password_changed_at: datetime | None = None
    must_change_password: bool = False


@dataclass(frozen=True)
class Access:
    state: LockState
    password: PasswordState
    may_login: bool  # IMAP, SMTP AUTH
    may_web_login: bool  # the password page, also with an expired password
    may_send: bool
    may_receive: bool
    reason_vi: str
    reason_en: str
    send_locked_on: date | None
    revoke_on: date | None
    password_expires_at: datetime | None

    @property
    def reason(self) -> str:
        return f"{self.reason_en} / {self.reason_vi}" if self.reason_en else ""


def evaluate(facts: AccountFacts, now: datetime, policy: Policy) -> Access:
    """The account's effective access at `now` (aware), per REQUIREMENTS.md's table."""
    today = local_date(now, policy.tz)
    lock_on = revoke_on = None
    if facts.is_person and facts.retired_on is not None:
        sched = retirement_schedule(facts.role, facts.retired_on, policy.retirement)
        lock_on, revoke_on = sched.send_lock_on, sched.revoke_on

    expires_at = None
    if facts.password_changed_at is not None:
        exp = policy.passwords.max_age.after(facts.password_changed_at)
        assert isinstance(exp, datetime)
        expires_at = exp
    if facts.must_change_password or facts.password_changed_at is None:
        pw = PasswordState.must_change
    elif expires_at is not None and now >= expires_at:
        pw = PasswordState.expired
    else:
        pw = PasswordState.ok

    if facts.revoked_at is not None or (revoke_on is not None and today >= revoke_on):
        when = revoke_on if facts.revoked_at is None else local_date(facts.revoked_at, policy.tz)
        state = LockState.revoked
        vi = f"Hộp thư đã bị thu hồi từ ngày {when:%d/%m/%Y} (Điều 5.3.b)"
        en = f"the mailbox was revoked on {when:%Y-%m-%d} (Article 5.3.b)"
    elif facts.suspended_reason is not None:
        state = LockState.suspended
        vi = f"Hộp thư đang bị tạm khóa: {facts.suspended_reason}. Liên hệ Sở TT&TT để khôi phục (Điều 6.3)"
        en = f"the mailbox is suspended: {facts.suspended_reason}. Contact the operators to restore it (Article 6.3)"
    elif lock_on is not None and today >= lock_on:
        state = LockState.send_locked
        vi = (
            f"Chức năng gửi thư đã bị khóa từ ngày {lock_on:%d/%m/%Y} "
            "do nghỉ hưu, nghỉ việc hoặc chuyển công tác (Điều 5.3.b)"
        )
        en = f"sending is locked since {lock_on:%Y-%m-%d} after retirement or departure (Article 5.3.b)"
    else:
        state = LockState.active
        vi = en = ""

    login = state in (LockState.active, LockState.send_locked)
    return Access(
        state=state,
        password=pw,
        may_login=login and pw == PasswordState.ok,
        may_web_login=login,
        may_send=state == LockState.active,
        may_receive=state != LockState.revoked,
        reason_vi=vi,
        reason_en=en,
        send_locked_on=lock_on,
        revoke_on=revoke_on,
        password_expires_at=expires_at,
    )


def password_reason(access: Access, account_url: str) -> tuple[str, str]:
    """Vietnamese and English text telling the user where to change the password."""
    if access.password == PasswordState.must_change:
        return (
            f"Bạn cần đổi mật khẩu trước khi sử dụng: {account_url}",
            f"you must change your password first at {account_url}",
        )
    if access.password == PasswordState.expired:
        return (
            f"Mật khẩu đã hết hạn (Điều 13.3), hãy đổi mật khẩu tại {account_url}",
            f"your password has expired (Article 13.3); change it at {account_url}",
        )
    return "", ""
