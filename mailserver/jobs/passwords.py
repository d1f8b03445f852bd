"""Đ13.3 "định kỳ 01 tháng thay đổi mật khẩu một lần": warnings before a password expires.

Expiry itself needs no job (policy.lockstate refuses mail logins from the
expiry instant; the web page still lets the user in to change it). This job
puts a warning into the mailbox at each lead time of
`passwords.expiry_warnings` (7, 3 and 1 days). The key includes the time
the password was set, so a new password starts a new series; after a pause
only the most urgent warning due is sent. Temporary passwords (must be
changed at first login), suspended and revoked mailboxes get none.
"""

from __future__ import annotations

import math
from datetime import datetime

from mailserver.jobs.base import Action, Done, JobBase
from mailserver.notices import days_en, moment_en, moment_vi
from policy.deadlines import due_warning, time_left
from policy.lockstate import LockState, PasswordState
from storage.records import Account, ts


class PasswordJob(JobBase):
    name = "passwords"
    rule = "Đ13.3"

    async def plan(self, now: datetime) -> list[Action]:
        leads = self.app.policy.passwords.expiry_warnings
        actions: list[Action] = []
        for acc in await self.directory.list_accounts():
            access = self.directory.access(acc, now)
            if access.state not in (LockState.active, LockState.send_locked) or access.password != PasswordState.ok:
                continue
            expires = access.password_expires_at
            if expires is None or acc.password_hash is None:
                continue
            warning = due_warning(expires, now, leads)
            if warning is None:
                continue
            local = expires.astimezone(self.app.policy.tz)
            actions.append(self.action(
                f"warning:{acc.id}:{ts(acc.password_changed_at)}:{warning}", acc.address,
                f"warn {acc.address}: password expires {local:%Y-%m-%d %H:%M} ({warning} before)",
                lambda acc=acc, expires=expires: self._warn(acc, expires)))
        return actions

    async def _warn(self, acc: Account, expires: datetime) -> Done:
        p = self.app.policy.passwords
        days = max(1, math.ceil(time_left(expires, self.app.clock()).total_seconds() / 86400))
        local = expires.astimezone(self.app.policy.tz)
        values = {"expires": moment_vi(local), "expires_en": moment_en(local), "days": str(days),
                  "days_en": days_en(days), "min_length": str(p.min_length),
                  "special": " ".join(p.special_characters)}
        await self.notices.send("password-expiry.txt", acc, values)
        return await self.recorded("notice.password-expiry", acc.address, {"expires_at": expires, "days_left": days})
