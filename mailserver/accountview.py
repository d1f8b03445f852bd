"""One description of an account, shared by `account show`, `--json` and the web page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.directory import Directory
from storage.records import Account
from storage.store import MailStore


async def account_summary(directory: Directory, account: Account, now: datetime | None = None,
                          store: MailStore | None = None) -> dict[str, Any]:
    """Everything about an account; with the store, its mailbox and exact usage (Đ7.3)."""
    access = directory.access(account, now)
    mailbox: dict[str, Any] = {}
    if store is not None and store.has_mailbox(account):
        usage = await store.usage(account)
        mailbox = {"mailbox": str(store.mailbox_path(account)), "usage_bytes": usage.bytes,
                   "usage_messages": usage.messages}
    unit = await directory.unit_by_id(account.unit_id)
    tz = directory.policy.tz
    return {
        "address": account.address,
        "name": account.display_name,
        "kind": account.kind,
        "unit": unit.local_part if unit else None,
        "unit_name": unit.name if unit else None,
        "role": account.role.value,
        "birth": (
            f"{account.birth_year}-{account.birth_month:02d}" if account.birth_year and account.birth_month
            else (str(account.birth_year) if account.birth_year else None)
        ),
        "state": access.state.value,
        "state_reason": access.reason_en or None,
        "state_reason_vi": access.reason_vi or None,
        "may_login": access.may_login,
        "may_send": access.may_send,
        "may_receive": access.may_receive,
        "password_state": access.password.value,
        "password_changed_at": account.password_changed_at.astimezone(tz).isoformat()
        if account.password_changed_at else None,
        "password_expires_at": access.password_expires_at.astimezone(tz).isoformat()
        if access.password_expires_at else None,
        "retired_on": account.retired_on.isoformat() if account.retired_on else None,
        "send_locked_on": access.send_locked_on.isoformat() if access.send_locked_on else None,
        "revoke_on": access.revoke_on.isoformat() if access.revoke_on else None,
        "suspended_reason": account.suspended_reason,
        "quota_bytes": await directory.quota_of(account),
        "quota_override": account.quota_bytes,
        "send_as": await directory.grants_of(account),
        "aliases": sorted(a.address for a in await directory.list_aliases() if a.target == account.address),
        "exempt_until": account.exempt_until.isoformat() if account.exempt_until else None,
        "exempt_reason": account.exempt_reason,
        "created_at": account.created_at.astimezone(tz).isoformat(),
        "last_login_at": account.last_login_at.astimezone(tz).isoformat() if account.last_login_at else None,
        "last_send_at": account.last_send_at.astimezone(tz).isoformat() if account.last_send_at else None,
        "last_receive_at": account.last_receive_at.astimezone(tz).isoformat() if account.last_receive_at else None,
        **mailbox,
    }
