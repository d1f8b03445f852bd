"""Rows of the directory as typed values."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from policy.lockstate import AccountFacts
from policy.naming import UnitKind
from policy.retirement import Role


def ts(value: datetime | None) -> str | None:
    """An aware instant as the UTC ISO string the database stores (sortable)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def parse_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


@dataclass(frozen=True)
class Unit:
    id: int
    local_part: str
    domain: str
    name: str
    kind: UnitKind
    parent_id: int | None
    quota_bytes: int | None
    created_at: datetime

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @classmethod
    def from_row(cls, r: Any) -> Unit:
        return cls(
            id=r["id"],
            local_part=r["local_part"],
            domain=r["domain"],
            name=r["name"],
            kind=UnitKind(r["kind"]),
            parent_id=r["parent_id"],
            quota_bytes=r["quota_bytes"],
            created_at=parse_ts(r["created_at"]),  # type: ignore[arg-type]
        )

    def public(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "local_part": self.local_part,
            "name": self.name,
            "kind": self.kind.value,
            "quota_bytes": self.quota_bytes,
        }


@dataclass(frozen=True)
class Account:
    id: int
    local_part: str
    domain: str
    kind: str  # "person" or "unit"
    display_name: str
    unit_id: int | None
    role: Role
    birth_year: int | None
    birth_month: int | None
    password_hash: str | None
    password_changed_at: datetime | None
    must_change_password: bool
    quota_bytes: int | None
    suspended_at: datetime | None
    suspended_reason: str | None
    retired_on: date | None
    revoked_at: datetime | None
    exempt_until: date | None
    exempt_reason: str | None
    created_at: datetime
    last_login_at: datetime | None
    last_send_at: datetime | None
    last_receive_at: datetime | None

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def is_person(self) -> bool:
        return self.kind == "person"

    def facts(self) -> AccountFacts:
        return AccountFacts(
            is_person=self.is_person,
            role=self.role,
            retired_on=self.retired_on,
            suspended_reason=self.suspended_reason,
            revoked_at=self.revoked_at,
            password_changed_at=self.password_changed_at,
            must_change_password=self.must_change_password,
        )

    @classmethod
    def from_row(cls, r: Any) -> Account:
        return cls(
            id=r["id"],
            local_part=r["local_part"],
            domain=r["domain"],
            kind=r["kind"],
            display_name=r["display_name"],
            unit_id=r["unit_id"],
            role=Role(r["role"]),
            birth_year=r["birth_year"],
            birth_month=r["birth_month"],
            password_hash=r["password_hash"],
            password_changed_at=parse_ts(r["password_changed_at"]),
            must_change_password=bool(r["must_change_password"]),
            quota_bytes=r["quota_bytes"],
            suspended_at=parse_ts(r["suspended_at"]),
            suspended_reason=r["suspended_reason"],
            retired_on=parse_date(r["retired_on"]),
            revoked_at=parse_ts(r["revoked_at"]),
            exempt_until=parse_date(r["exempt_until"]),
            exempt_reason=r["exempt_reason"],
            created_at=parse_ts(r["created_at"]),  # type: ignore[arg-type]
            last_login_at=parse_ts(r["last_login_at"]),
            last_send_at=parse_ts(r["last_send_at"]),
            last_receive_at=parse_ts(r["last_receive_at"]),
        )

    def audit_view(self) -> dict[str, Any]:
        """What the audit log records of an account (never the password hash)."""
        d = asdict(self)
        d.pop("password_hash")
        d["password_set"] = self.password_hash is not None
        return json.loads(json.dumps(d, default=str))


@dataclass(frozen=True)
class Alias:
    id: int
    address: str
    target: str
    created_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    before: Any
    after: Any
    rule: str | None

    @classmethod
    def from_row(cls, r: Any) -> AuditEntry:
        return cls(
            id=r["id"],
            at=parse_ts(r["at"]),  # type: ignore[arg-type]
            actor=r["actor"],
            action=r["action"],
            target=r["target"],
            before=json.loads(r["before"]) if r["before"] else None,
            after=json.loads(r["after"]) if r["after"] else None,
            rule=r["rule"],
        )
