"""The province's mail directory (Đ4.3 "Danh bạ"): domains, units, accounts, aliases, grants, audit.

One SQLite database on the mail server holds every account and unit with its
registration details. Every change an operator makes, and every change the
server makes by itself, is written to the audit table in the same
transaction as the change (Đ5.1–2: who, what, when, before and after).

Effective access (may this account log in, send, receive?) is never stored:
`access()` computes it from the stored facts and the clock through
`policy.lockstate`, so date-based rules take effect on their day.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from policy.calendar import local_date, utc_now
from policy.errors import Conflict, NotFound, ValidationFailed
from policy.limits import effective_quota, quota_floor_ok
from policy.lockstate import Access, LockState, evaluate
from policy.model import Policy
from policy.naming import (
    UnitKind,
    all_taken,
    person_candidates,
    unit_local_part,
    validate_local_part,
)
from policy.passwords import check_password, generate_temporary
from policy.retirement import Role
from policy.units import format_size
from storage.db import Database
from storage.hashing import PasswordHasher, normalize_imported
from storage.records import Account, Alias, AuditEntry, Unit, ts

# RFC 2142 role addresses and other names no person or unit may take.
RESERVED_LOCAL_PARTS = frozenset(
    {"postmaster", "abuse", "support", "hostmaster", "webmaster", "mailer-daemon", "root", "noc", "security"}
)
# Activity timestamps are written at most this often per account: every IMAP
# reconnect would otherwise be a write to the directory.
ACTIVITY_RESOLUTION = timedelta(hours=1)
ALIAS_DEPTH = 5


@dataclass(frozen=True)
class Created:
    account: Account
    temporary_password: str | None
    unit: Unit | None = None


@dataclass(frozen=True)
class PersonRequest:
    """One person to provision (`account add` or a row of `account import`)."""

    name: str
    unit: str | None
    role: Role = Role.staff
    birth_year: int | None = None
    birth_month: int | None = None
    address: str | None = None
    password: str | None = None
    must_change: bool | None = None
    quota: int | None = None
    domain: str | None = None


@dataclass(frozen=True)
class Resolution:
    """Where mail for an address goes: local accounts and remote addresses."""

    accounts: list[Account]
    remote: list[str]


def parse_birth(value: str | None) -> tuple[int | None, int | None]:
    """`1979-03` or `1979` (Đ4.2.b uses month and year only)."""
    if value is None or value == "":
        return None, None
    parts = value.strip().split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else None
    except ValueError:
        raise ValidationFailed("birth", f'"{value}" is not a birth date (use YYYY-MM)') from None
    if not 1900 <= year <= 2100 or (month is not None and not 1 <= month <= 12) or len(parts) > 3:
        raise ValidationFailed("birth", f'"{value}" is not a birth date (use YYYY-MM)')
    return year, month


class Directory:
    def __init__(
        self,
        db: Database,
        policy: Policy,
        domains: list[str],
        hasher: PasswordHasher,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.policy = policy
        self.domains = domains
        self.hasher = hasher
        self.clock = clock
        # Called with an account id whenever its password or state changes
        # (the authentication cache subscribes).
        self.on_change: list[Callable[[int], None]] = []
        # Awaited with every new account after its transaction commits (the composition root
        # registers the mail store's create_mailbox here).
        self.on_created: list[Callable[[Account], Awaitable[object]]] = []

    @classmethod
    async def open(
        cls,
        path: Path,
        policy: Policy,
        domains: list[str],
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> Directory:
        db = await Database.open(path, "directory")
        d = cls(db, policy, domains, hasher or PasswordHasher(policy.passwords.hashing), clock)
        await d.ensure_domains(domains)
        return d

    async def close(self) -> None:
        await self.db.close()

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    # ------------------------------------------------------------------ helpers

    def split(self, address: str, field: str = "address") -> tuple[str, str]:
        """`local@domain` lower-cased; a bare local part means the primary domain."""
        address = address.strip().lower()
        if "@" in address:
            local, _, domain = address.rpartition("@")
            domain = domain.rstrip(".")
        else:
            local, domain = address, self.primary_domain
        if domain not in self.domains:
            raise ValidationFailed(field, f'"{domain}" is not a domain this server serves')
        if not local:
            raise ValidationFailed(field, f'"{address}" is not an address')
        return local, domain

    def _changed(self, account_id: int) -> None:
        for cb in self.on_change:
            cb(account_id)

    async def _created(self, accounts: Iterable[Account]) -> None:
        for account in accounts:
            for cb in self.on_created:
                await cb(account)

    async def _audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        before: Any = None,
        after: Any = None,
        rule: str | None = None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO audit (at, actor, action, target, before, after, rule) VALUES (?,?,?,?,?,?,?)",
            (
                ts(self.clock()),
                actor,
                action,
                target,
                None if before is None else json.dumps(before, ensure_ascii=False, default=str),
                None if after is None else json.dumps(after, ensure_ascii=False, default=str),
                rule,
            ),
        )

    async def audit(self, actor: str, action: str, target: str | None, *, before: Any = None,
                    after: Any = None, rule: str | None = None) -> None:
        """Record an action that changed nothing in this database (a block, a notice)."""
        async with self.db.transaction():
            await self._audit(actor, action, target, before, after, rule)

    async def audit_within(self, actor: str, action: str, target: str | None, *, before: Any = None,
                           after: Any = None, rule: str | None = None) -> None:
        """Like `audit`, inside a transaction the caller holds on `self.db`, so that a change made by
        another table's owner (maintenance windows, archives) commits together with its record."""
        await self._audit(actor, action, target, before, after, rule)

    async def prune_audit(self, before: datetime) -> int:
        """Đ7.2: the audit log keeps its own retention (logs.audit_retention); older rows go."""
        async with self.db.transaction():
            row = await self.db.fetchone("SELECT COUNT(*) FROM audit WHERE at < ?", (ts(before),))
            await self.db.execute("DELETE FROM audit WHERE at < ?", (ts(before),))
        return int(row[0]) if row else 0

    async def audit_entries(
        self, *, target: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        sql = "SELECT * FROM audit WHERE 1=1"
        params: list[Any] = []
        if target:
            sql += " AND target = ?"
            params.append(target)
        if since:
            sql += " AND at >= ?"
            params.append(ts(since))
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [AuditEntry.from_row(r) for r in await self.db.fetchall(sql, params)]

    async def audit_targets(self, action: str, rule: str, since: datetime,
                            until: datetime) -> list[tuple[str, datetime]]:
        """(target, at) of the audit rows of one action under one rule in [since, until): the reports
        count e.g. the Đ6.2.a suspensions of a period from what the jobs recorded."""
        rows = await self.db.fetchall(
            "SELECT target, at FROM audit WHERE action=? AND rule=? AND at >= ? AND at < ? ORDER BY at",
            (action, rule, ts(since), ts(until)),
        )
        return [(r["target"], datetime.fromisoformat(r["at"])) for r in rows]

    # ------------------------------------------------------------------ domains

    async def ensure_domains(self, domains: Iterable[str]) -> None:
        rows = {r["name"] for r in await self.db.fetchall("SELECT name FROM domains")}
        missing = [d for d in domains if d not in rows]
        if missing:
            async with self.db.transaction():
                for d in missing:
                    await self.db.execute(
                        "INSERT OR IGNORE INTO domains (name, created_at) VALUES (?, ?)", (d, ts(self.clock()))
                    )

    # ------------------------------------------------------------------ lookups

    async def get_account(self, address: str) -> Account | None:
        try:
            local, domain = self.split(address)
        except ValidationFailed:
            return None
        row = await self.db.fetchone(
            "SELECT * FROM accounts WHERE local_part=? AND domain=? AND released_at IS NULL", (local, domain)
        )
        return Account.from_row(row) if row else None

    async def require_account(self, address: str, field: str = "address") -> Account:
        self.split(address, field)
        acc = await self.get_account(address)
        if acc is None:
            raise NotFound(field, f'no account "{address}"')
        return acc

    async def account_by_id(self, account_id: int) -> Account | None:
        row = await self.db.fetchone("SELECT * FROM accounts WHERE id=?", (account_id,))
        return Account.from_row(row) if row else None

    async def list_accounts(self, unit: str | None = None, recursive: bool = False, *,
                            include_released: bool = False) -> list[Account]:
        """Accounts holding their address; `include_released` adds revoked accounts whose address has
        been given to someone new (the reports count them in the period they were revoked)."""
        live = "1=1" if include_released else "released_at IS NULL"
        if unit is None:
            rows = await self.db.fetchall(f"SELECT * FROM accounts WHERE {live} ORDER BY domain, local_part, id")
        else:
            units = await self.unit_tree(unit) if recursive else [await self.require_unit(unit)]
            ids = [u.id for u in units]
            marks = ",".join("?" * len(ids))
            rows = await self.db.fetchall(
                f"SELECT * FROM accounts WHERE {live} AND unit_id IN ({marks}) ORDER BY kind DESC, local_part, id",
                ids,
            )
        return [Account.from_row(r) for r in rows]

    async def get_unit(self, local: str, domain: str | None = None) -> Unit | None:
        local = local.strip().lower()
        if "@" in local:
            local, domain = self.split(local, "unit")
        row = await self.db.fetchone(
            "SELECT * FROM units WHERE local_part=? AND domain=?", (local, domain or self.primary_domain)
        )
        return Unit.from_row(row) if row else None

    async def require_unit(self, local: str, field: str = "unit") -> Unit:
        unit = await self.get_unit(local)
        if unit is None:
            raise NotFound(field, f'no unit "{local}" (units are named by their address, e.g. pnv.tuyan)')
        return unit

    async def unit_by_id(self, unit_id: int | None) -> Unit | None:
        if unit_id is None:
            return None
        row = await self.db.fetchone("SELECT * FROM units WHERE id=?", (unit_id,))
        return Unit.from_row(row) if row else None

    async def list_units(self) -> list[Unit]:
        rows = await self.db.fetchall("SELECT * FROM units ORDER BY domain, local_part")
        return [Unit.from_row(r) for r in rows]

    async def unit_tree(self, local: str) -> list[Unit]:
        """A unit and all its sub-units, parents before children."""
        root = await self.require_unit(local)
        rows = await self.db.fetchall(
            """WITH RECURSIVE tree(id, depth) AS (
                   SELECT id, 0 FROM units WHERE id = ?
                   UNION ALL
                   SELECT units.id, tree.depth + 1 FROM units JOIN tree ON units.parent_id = tree.id
               )
               SELECT units.* FROM units JOIN tree USING (id) ORDER BY tree.depth, units.local_part""",
            (root.id,),
        )
        return [Unit.from_row(r) for r in rows]

    async def unit_mailbox(self, unit: Unit) -> Account | None:
        row = await self.db.fetchone(
            "SELECT * FROM accounts WHERE unit_id=? AND kind='unit' AND released_at IS NULL", (unit.id,)
        )
        return Account.from_row(row) if row else None

    def access(self, account: Account, now: datetime | None = None) -> Access:
        """The account's effective lock state and password state right now (policy.lockstate)."""
        return evaluate(account.facts(), now or self.clock(), self.policy)

    async def quota_of(self, account: Account) -> int:
        unit = await self.unit_by_id(account.unit_id)
        return effective_quota(account.quota_bytes, unit.quota_bytes if unit else None, self.policy.quota)

    # ------------------------------------------------------------------ address space

    async def _taken(self, local: str, domain: str) -> bool:
        """Is `local@domain` used by an account, alias, reserved name or a revoked mailbox
        whose reuse period has not passed (Đ5.3.b)? Releases a revoked address that may be reused."""
        if local in RESERVED_LOCAL_PARTS:
            return True
        if await self.db.fetchone("SELECT 1 FROM aliases WHERE local_part=? AND domain=?", (local, domain)):
            return True
        row = await self.db.fetchone(
            "SELECT * FROM accounts WHERE local_part=? AND domain=? AND released_at IS NULL", (local, domain)
        )
        if row is None:
            return False
        acc = Account.from_row(row)
        now = self.clock()
        access = self.access(acc, now)
        if access.state != LockState.revoked:
            return True
        revoked_day = local_date(acc.revoked_at, self.policy.tz) if acc.revoked_at else access.revoke_on
        assert revoked_day is not None
        if local_date(now, self.policy.tz) < self.policy.retirement.address_reuse_after.after(revoked_day):
            return True
        await self.db.execute("UPDATE accounts SET released_at=? WHERE id=?", (ts(now), acc.id))
        await self._audit(
            "system",
            "account.release-address",
            acc.address,
            rule="Đ5.3.b: revoked address reusable after retirement.address_reuse_after",
        )
        return False

    async def _check_password(self, password: str) -> None:
        problems = check_password(password, self.policy.passwords, self.hasher.byte_limit)
        if problems:
            raise ValidationFailed("password", "does not meet Đ9: needs " + ", ".join(p.en for p in problems))

    def _check_quota(self, quota: int | None, field: str = "quota") -> None:
        if quota is not None and not quota_floor_ok(quota, self.policy.quota):
            raise ValidationFailed(
                field,
                f"{format_size(quota)} is below the minimum of {format_size(self.policy.quota.default)} (Đ7.3.b)",
            )

    async def _new_password(self, password: str | None) -> tuple[str, str | None]:
        """(hash, temporary password shown once or None)."""
        if password is None:
            temp = generate_temporary(self.policy.passwords)
            return await self.hasher.hash_async(temp), temp
        await self._check_password(password)
        return await self.hasher.hash_async(password), None

    # ------------------------------------------------------------------ units

    async def add_unit(
        self,
        name: str,
        kind: UnitKind,
        *,
        parent: str | None = None,
        abbrev: str | None = None,
        password: str | None = None,
        quota: int | None = None,
        actor: str,
    ) -> Created:
        """A unit and its own mailbox (Đ4.1), e.g. "Phòng Nội vụ" under tuyan → pnv.tuyan@."""
        name = name.strip()
        if not name:
            raise ValidationFailed("name", "a unit needs a name")
        self._check_quota(quota)
        parent_unit = await self.require_unit(parent, "parent") if parent else None
        if parent_unit is not None:
            if kind in (UnitKind.department, UnitKind.district):
                raise ValidationFailed("parent", f"a {kind.value} is a top-level unit; it takes no --parent")
            if kind == UnitKind.commune and parent_unit.kind != UnitKind.district:
                raise ValidationFailed("parent", f'"{parent_unit.local_part}" is not a district (Đ4.1.c)')
        local = unit_local_part(name, kind, parent_unit.local_part if parent_unit else None, abbrev)
        domain = parent_unit.domain if parent_unit else self.primary_domain
        pw_hash, temp = await self._new_password(password)
        now = self.clock()
        async with self.db.transaction():
            if await self._taken(local, domain) or await self.db.fetchone(
                "SELECT 1 FROM units WHERE local_part=? AND domain=?", (local, domain)
            ):
                raise Conflict(
                    "abbrev" if abbrev else "name",
                    f"{local}@{domain} is already taken; choose another abbreviation with --abbrev",
                )
            unit_id = await self.db.execute(
                "INSERT INTO units (local_part, domain, name, kind, parent_id, quota_bytes, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (local, domain, name, kind.value, parent_unit.id if parent_unit else None, quota, ts(now)),
            )
            acc_id = await self.db.execute(
                "INSERT INTO accounts (local_part, domain, kind, display_name, unit_id, role, password_hash, "
                "password_changed_at, must_change_password, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (local, domain, "unit", name, unit_id, Role.staff.value, pw_hash, ts(now), 1 if temp else 0,
                 ts(now)),
            )
            unit = await self.unit_by_id(unit_id)
            account = await self.account_by_id(acc_id)
            assert unit and account
            await self._audit(actor, "unit.add", unit.address, after=unit.public(), rule="Đ4.1, Đ5.1")
        await self._created([account])
        return Created(account=account, temporary_password=temp, unit=unit)

    async def set_unit_quota(self, unit_local: str, quota: int, *, actor: str) -> Unit:
        """Default quota for the unit's mailboxes (Đ7.3.a); the policy default is the floor."""
        self._check_quota(quota)
        unit = await self.require_unit(unit_local)
        async with self.db.transaction():
            await self.db.execute("UPDATE units SET quota_bytes=? WHERE id=?", (quota, unit.id))
            await self._audit(actor, "unit.set-quota", unit.address, {"quota_bytes": unit.quota_bytes},
                              {"quota_bytes": quota}, rule="Đ7.3.a")
        return await self.require_unit(unit_local)

    # ------------------------------------------------------------------ accounts

    async def add_person(self, req: PersonRequest, *, actor: str) -> Created:
        """Provision one person under Đ4.2's naming rule; returns the allocated address."""
        prepared = await self._prepare_person(req)
        async with self.db.transaction():
            created = await self._insert_person(req, prepared, actor)
        await self._created([created.account])
        return created

    async def import_people(self, reqs: list[PersonRequest], *, actor: str) -> list[Created]:
        """All rows or none: a failure on any row rolls the whole import back.

        Raises ImportFailed with the row number (1-based, header excluded).
        """

        async def prepare(i: int, req: PersonRequest) -> Any:
            try:
                return await self._prepare_person(req)
            except (ValidationFailed, NotFound, Conflict) as e:
                raise ImportFailed(i, e) from e

        prepared = await gather_limited(
            [prepare(i, r) for i, r in enumerate(reqs, 1)], max(2, os.cpu_count() or 2)
        )
        for result in prepared:
            if isinstance(result, BaseException):
                raise result  # the first failing row, in file order
        out = []
        async with self.db.transaction():
            for i, (req, prep) in enumerate(zip(reqs, prepared, strict=True), 1):
                try:
                    out.append(await self._insert_person(req, prep, actor))
                except (ValidationFailed, NotFound, Conflict) as e:
                    raise ImportFailed(i, e) from e
        await self._created(c.account for c in out)
        return out

    async def _prepare_person(self, req: PersonRequest) -> tuple[Unit | None, str, str | None, str]:
        """Checks and hashing done before the write lock is taken (argon2 is slow)."""
        if not req.name.strip():
            raise ValidationFailed("name", "a person needs a full name")
        unit = await self.require_unit(req.unit) if req.unit else None
        self._check_quota(req.quota)
        domain = req.domain.lower() if req.domain else (unit.domain if unit else self.primary_domain)
        if domain not in self.domains:
            raise ValidationFailed("domain", f'"{domain}" is not a domain this server serves')
        if req.address:
            local, adomain = self.split(req.address)
            if "@" in req.address:
                domain = adomain
            validate_local_part(local)
        person_candidates(req.name, req.birth_year, req.birth_month)  # validates the name
        pw_hash, temp = await self._new_password(req.password)
        return unit, domain, temp, pw_hash

    async def _insert_person(
        self, req: PersonRequest, prepared: tuple[Unit | None, str, str | None, str], actor: str
    ) -> Created:
        unit, domain, temp, pw_hash = prepared
        if req.address:
            local = self.split(req.address)[0]
            if await self._taken(local, domain):
                raise Conflict("address", f"{local}@{domain} is already taken")
        else:
            candidates = person_candidates(req.name, req.birth_year, req.birth_month)
            for local in candidates:
                if not await self._taken(local, domain):
                    break
            else:
                raise all_taken(candidates)
        must_change = req.must_change if req.must_change is not None else temp is not None
        now = self.clock()
        acc_id = await self.db.execute(
            "INSERT INTO accounts (local_part, domain, kind, display_name, unit_id, role, birth_year, "
            "birth_month, password_hash, password_changed_at, must_change_password, quota_bytes, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (local, domain, "person", req.name.strip(), unit.id if unit else None, req.role.value,
             req.birth_year, req.birth_month, pw_hash, ts(now), 1 if must_change else 0, req.quota, ts(now)),
        )
        account = await self.account_by_id(acc_id)
        assert account
        await self._audit(actor, "account.add", account.address, after=account.audit_view(), rule="Đ4.2, Đ5.3.a")
        return Created(account=account, temporary_password=temp)

    async def _update(self, account: Account, actor: str, action: str, changes: dict[str, Any],
                      rule: str | None = None) -> Account:
        """Apply column changes to one account and audit before/after, in one transaction."""
        sets = ", ".join(f"{k}=?" for k in changes)
        async with self.db.transaction():
            await self.db.execute(f"UPDATE accounts SET {sets} WHERE id=?", [*changes.values(), account.id])
            after = await self.account_by_id(account.id)
            assert after
            await self._audit(actor, action, account.address, account.audit_view(), after.audit_view(), rule)
        self._changed(account.id)
        return after

    async def update_account(
        self,
        address: str,
        *,
        name: str | None = None,
        unit: str | None = None,
        role: Role | None = None,
        birth: str | None = None,
        actor: str,
    ) -> Account:
        """Change registration details; the Đ5.3.b schedule follows the new role at once."""
        acc = await self.require_account(address)
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip():
                raise ValidationFailed("name", "the name may not be empty")
            changes["display_name"] = name.strip()
        if unit is not None:
            changes["unit_id"] = (await self.require_unit(unit)).id
        if role is not None:
            if not acc.is_person:
                raise ValidationFailed("role", "a unit mailbox has no role")
            changes["role"] = role.value
        if birth is not None:
            changes["birth_year"], changes["birth_month"] = parse_birth(birth)
        if not changes:
            raise ValidationFailed("update", "nothing to change (give --name, --unit, --role or --birth)")
        return await self._update(acc, actor, "account.update", changes)

    async def set_password(
        self, address: str, password: str | None, *, must_change: bool | None = None, actor: str,
        rule: str | None = None
    ) -> tuple[Account, str | None]:
        """Set (or generate, when None) a password. Generated ones must be changed at first login."""
        acc = await self.require_account(address)
        pw_hash, temp = await self._new_password(password)
        mc = must_change if must_change is not None else temp is not None
        acc = await self._update(
            acc, actor, "account.passwd",
            {"password_hash": pw_hash, "password_changed_at": ts(self.clock()), "must_change_password": int(mc)},
            rule or "Đ13.3",
        )
        return acc, temp

    async def store_password_hash(self, account: Account, pw_hash: str, *, must_change: bool, actor: str,
                                  action: str, reset_age: bool = True) -> Account:
        """Replace the hash (self-service change, or argon2 rehash of an imported hash)."""
        changes: dict[str, Any] = {"password_hash": pw_hash, "must_change_password": int(must_change)}
        if reset_age:
            changes["password_changed_at"] = ts(self.clock())
        return await self._update(account, actor, action, changes, "Đ9, Đ13.3")

    async def import_password_hashes(self, rows: list[tuple[str, str]], *, must_change: bool = False,
                                     actor: str) -> list[Account]:
        """Đ8.2.d: hashes brought from the old server ({SSHA512}, {SSHA}, {SHA512-CRYPT}/$6$, {BLF-CRYPT}/bcrypt)
        so users keep their passwords; `AuthService` replaces each with argon2id at the first login.

        All rows or none (ImportFailed names the row, 1-based). The password age starts now, so the
        Đ13.3 monthly change is due a month after the migration, not at once.
        """
        prepared: list[tuple[Account, str]] = []
        seen: set[int] = set()
        for i, (address, stored) in enumerate(rows, 1):
            try:
                account = await self.require_account(address)
                if account.id in seen:
                    raise Conflict("address", f"{account.address} appears twice")
                seen.add(account.id)
                prepared.append((account, normalize_imported(stored)))
            except (ValidationFailed, NotFound, Conflict) as e:
                raise ImportFailed(i, e) from e
        now = ts(self.clock())
        out = []
        async with self.db.transaction():
            for account, pw_hash in prepared:
                await self.db.execute(
                    "UPDATE accounts SET password_hash=?, password_changed_at=?, must_change_password=? WHERE id=?",
                    (pw_hash, now, int(must_change), account.id))
                after = await self.account_by_id(account.id)
                assert after
                await self._audit(actor, "account.import-hash", account.address, account.audit_view(),
                                  after.audit_view(), "Đ8.2.d, Đ9")
                out.append(after)
        for account in out:
            self._changed(account.id)
        return out

    async def suspend(self, address: str, reason: str, *, actor: str, rule: str = "Đ6.2") -> Account:
        """Đ6.1: login and sending stop; the mailbox still receives."""
        if not reason.strip():
            raise ValidationFailed("reason", "a suspension needs a reason (Đ6.2)")
        acc = await self.require_account(address)
        if acc.revoked_at:
            raise Conflict("address", f"{acc.address} is revoked")
        return await self._update(
            acc, actor, "account.suspend",
            {"suspended_at": ts(self.clock()), "suspended_reason": reason.strip()}, rule,
        )

    async def restore(self, address: str, *, actor: str) -> tuple[Account, str]:
        """Đ6.3.b–c: reactivate, reset the password, force a change at first login."""
        acc = await self.require_account(address)
        if acc.revoked_at:
            raise Conflict("address", f"{acc.address} is revoked and cannot be restored")
        temp = generate_temporary(self.policy.passwords)
        pw_hash = await self.hasher.hash_async(temp)
        acc = await self._update(
            acc, actor, "account.restore",
            {"suspended_at": None, "suspended_reason": None, "password_hash": pw_hash,
             "password_changed_at": ts(self.clock()), "must_change_password": 1},
            "Đ6.3",
        )
        return acc, temp

    async def retire(self, address: str, leave_date: date | None, *, actor: str) -> Account:
        """Record the official leave date (Đ5.3.b); None clears a date entered by mistake."""
        acc = await self.require_account(address)
        if not acc.is_person:
            raise ValidationFailed("address", "unit mailboxes do not retire")
        return await self._update(
            acc, actor, "account.retire", {"retired_on": leave_date.isoformat() if leave_date else None}, "Đ5.3.b"
        )

    async def revoke(self, address: str, *, actor: str, rule: str = "Đ5.3.b", at: datetime | None = None) -> Account:
        """Revoke now, or at `at` (the retirement job records the day the Đ5.3.b schedule revoked the
        mailbox, even when it runs later, so the address-reuse period counts from that day)."""
        acc = await self.require_account(address)
        if acc.revoked_at:
            raise Conflict("address", f"{acc.address} is already revoked")
        return await self._update(acc, actor, "account.revoke", {"revoked_at": ts(at or self.clock())}, rule)

    async def set_quota(self, address: str, quota: int | None, *, actor: str) -> Account:
        """Raise a mailbox's quota (Đ7.3.a); never below the Đ7.3.b minimum. None: back to default."""
        self._check_quota(quota)
        acc = await self.require_account(address)
        return await self._update(acc, actor, "account.set-quota", {"quota_bytes": quota}, "Đ7.3.a")

    async def exempt(self, address: str, until: date | None, reason: str | None, *, actor: str) -> Account:
        """Đ6.2.a: an operator-recorded reason keeps an inactive mailbox from suspension."""
        acc = await self.require_account(address)
        if until is not None and not (reason or "").strip():
            raise ValidationFailed("reason", "an exemption needs a reason (Đ6.2.a)")
        return await self._update(
            acc, actor, "account.exempt",
            {"exempt_until": until.isoformat() if until else None, "exempt_reason": reason}, "Đ6.2.a",
        )

    async def record_activity(self, account_id: int, kind: str, when: datetime | None = None) -> None:
        """Last login/send/receive (they feed Đ6.2.a); written at most once an hour."""
        column = {"login": "last_login_at", "send": "last_send_at", "receive": "last_receive_at"}[kind]
        when = when or self.clock()
        async with self.db.transaction():
            await self.db.execute(
                f"UPDATE accounts SET {column}=? WHERE id=? AND ({column} IS NULL OR {column} < ?)",
                (ts(when), account_id, ts(when - ACTIVITY_RESOLUTION)),
            )

    # ------------------------------------------------------------------ grants

    async def grant_send_as(self, address: str, unit_address: str, *, actor: str) -> None:
        acc = await self.require_account(address)
        target = await self.require_account(unit_address, "send_as")
        if target.kind != "unit":
            raise ValidationFailed("send_as", f"{target.address} is not a unit mailbox")
        if target.id == acc.id:
            raise ValidationFailed("send_as", "an account always sends as itself")
        async with self.db.transaction():
            await self.db.execute(
                "INSERT OR IGNORE INTO send_grants (account_id, unit_account_id, created_at) VALUES (?,?,?)",
                (acc.id, target.id, ts(self.clock())),
            )
            await self._audit(actor, "account.grant", acc.address, after={"send_as": target.address},
                              rule="Đ12.1")

    async def revoke_grant(self, address: str, unit_address: str, *, actor: str) -> None:
        acc = await self.require_account(address)
        target = await self.require_account(unit_address, "send_as")
        async with self.db.transaction():
            row = await self.db.fetchone(
                "SELECT 1 FROM send_grants WHERE account_id=? AND unit_account_id=?", (acc.id, target.id)
            )
            if not row:
                raise NotFound("send_as", f"{acc.address} has no grant to send as {target.address}")
            await self.db.execute(
                "DELETE FROM send_grants WHERE account_id=? AND unit_account_id=?", (acc.id, target.id)
            )
            await self._audit(actor, "account.revoke-grant", acc.address, before={"send_as": target.address})

    async def grants_of(self, account: Account) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT a.local_part, a.domain FROM send_grants g JOIN accounts a ON a.id = g.unit_account_id "
            "WHERE g.account_id=? ORDER BY a.local_part",
            (account.id,),
        )
        return [f"{r['local_part']}@{r['domain']}" for r in rows]

    async def sender_addresses(self, account: Account) -> set[str]:
        """Every address this account may use as sender: its own, aliases to it, granted unit mailboxes
        and their aliases."""
        own = {account.address, *await self.grants_of(account)}
        out = set(own)
        for alias in await self.list_aliases():
            if alias.target in own:
                out.add(alias.address)
        return out

    async def may_send_as(self, account: Account, address: str) -> bool:
        return address.strip().lower() in await self.sender_addresses(account)

    # ------------------------------------------------------------------ outbound holds and send limits (Đ6.2.b)

    async def hold_outbound(self, account: Account, reason: str, *, actor: str) -> bool:
        """Put the account's outbound mail on hold; False when it already was (audited once)."""
        async with self.db.transaction():
            if await self.db.fetchone("SELECT 1 FROM outbound_holds WHERE account_id=?", (account.id,)):
                return False
            await self.db.execute(
                "INSERT INTO outbound_holds (account_id, held_at, reason, actor) VALUES (?,?,?,?)",
                (account.id, ts(self.clock()), reason, actor),
            )
            await self._audit(actor, "account.hold-outbound", account.address, after={"reason": reason},
                              rule="Đ6.2.b")
        return True

    async def release_outbound(self, address: str, *, actor: str) -> Account:
        acc = await self.require_account(address)
        async with self.db.transaction():
            row = await self.db.fetchone("SELECT reason FROM outbound_holds WHERE account_id=?", (acc.id,))
            if row is None:
                raise NotFound("address", f"{acc.address} has no outbound hold")
            await self.db.execute("DELETE FROM outbound_holds WHERE account_id=?", (acc.id,))
            await self._audit(actor, "account.release-outbound", acc.address, before={"reason": row["reason"]},
                              rule="Đ6.2.b")
        return acc

    async def outbound_hold(self, account: Account) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT held_at, reason, actor FROM outbound_holds WHERE account_id=?",
                                     (account.id,))
        return dict(row) if row else None

    async def set_send_limit(self, address: str, messages: int | None, recipients: int | None, *,
                             actor: str) -> Account:
        """Grant an account limits other than the policy's (None, None: back to the policy)."""
        for name, v in (("messages", messages), ("recipients", recipients)):
            if v is not None and v < 1:
                raise ValidationFailed(name, f"{v} is not a positive number")
        acc = await self.require_account(address)
        async with self.db.transaction():
            before = await self.db.fetchone(
                "SELECT messages_per_window, recipients_per_window FROM send_limits WHERE account_id=?", (acc.id,)
            )
            await self.db.execute("DELETE FROM send_limits WHERE account_id=?", (acc.id,))
            if messages is not None or recipients is not None:
                await self.db.execute(
                    "INSERT INTO send_limits (account_id, messages_per_window, recipients_per_window, set_at) "
                    "VALUES (?,?,?,?)", (acc.id, messages, recipients, ts(self.clock())),
                )
            await self._audit(actor, "account.set-send-limit", acc.address,
                              before=dict(before) if before else None,
                              after={"messages_per_window": messages, "recipients_per_window": recipients},
                              rule="Đ6.2.b")
        return acc

    async def send_limit(self, account: Account) -> tuple[int, int]:
        """(messages, recipients) per policy window for this account: its grant, else the policy."""
        rules = self.policy.sending
        row = await self.db.fetchone(
            "SELECT messages_per_window, recipients_per_window FROM send_limits WHERE account_id=?", (account.id,)
        )
        if row is None:
            return rules.messages_per_window, rules.recipients_per_window
        return (row["messages_per_window"] or rules.messages_per_window,
                row["recipients_per_window"] or rules.recipients_per_window)

    # ------------------------------------------------------------------ aliases

    async def add_alias(self, address: str, target: str, *, actor: str) -> Alias:
        local, domain = self.split(address)
        validate_local_part(local)
        target = target.strip().lower()
        if "@" not in target:
            target = f"{target}@{self.primary_domain}"
        tlocal, _, tdomain = target.rpartition("@")
        if not tlocal or not tdomain:
            raise ValidationFailed("target", f'"{target}" is not an address')
        if tdomain in self.domains and await self.resolve(target) is None:
            raise NotFound("target", f'no account or alias "{target}"')
        async with self.db.transaction():
            existing = await self.db.fetchone(
                "SELECT 1 FROM accounts WHERE local_part=? AND domain=? AND released_at IS NULL", (local, domain)
            )
            if existing:
                raise Conflict("address", f"{local}@{domain} is an account")
            if await self.db.fetchone(
                "SELECT 1 FROM aliases WHERE local_part=? AND domain=? AND target=?", (local, domain, target)
            ):
                raise Conflict("address", f"{local}@{domain} already points to {target}")
            alias_id = await self.db.execute(
                "INSERT INTO aliases (local_part, domain, target, created_at) VALUES (?,?,?,?)",
                (local, domain, target, ts(self.clock())),
            )
            await self._audit(actor, "alias.add", f"{local}@{domain}", after={"target": target})
        return Alias(alias_id, f"{local}@{domain}", target, self.clock())

    async def remove_alias(self, address: str, target: str | None = None, *, actor: str) -> int:
        local, domain = self.split(address)
        sql = "DELETE FROM aliases WHERE local_part=? AND domain=?"
        params: list[Any] = [local, domain]
        if target:
            sql += " AND target=?"
            params.append(target.strip().lower())
        async with self.db.transaction():
            before = [a.target for a in await self.list_aliases() if a.address == f"{local}@{domain}"]
            await self.db.execute(sql, params)
            gone = len(before) - len(
                await self.db.fetchall("SELECT 1 FROM aliases WHERE local_part=? AND domain=?", (local, domain))
            )
            if not gone:
                raise NotFound("address", f'no alias "{local}@{domain}"' + (f" → {target}" if target else ""))
            await self._audit(actor, "alias.remove", f"{local}@{domain}", before={"targets": before})
        return gone

    async def list_aliases(self) -> list[Alias]:
        rows = await self.db.fetchall("SELECT * FROM aliases ORDER BY domain, local_part, target")
        return [
            Alias(r["id"], f"{r['local_part']}@{r['domain']}", r["target"], datetime.fromisoformat(r["created_at"]))
            for r in rows
        ]

    async def resolve(self, address: str) -> Resolution | None:
        """Where mail to `address` goes; None if the address is unknown here.

        Revoked accounts are unknown (Đ5.3.b: 550 5.1.1). Suspended ones still
        receive (Đ6.1).
        """
        try:
            self.split(address)
        except ValidationFailed:
            return None
        accounts: dict[int, Account] = {}
        remote: list[str] = []
        found = await self._resolve_into(address.strip().lower(), accounts, remote, 0, set())
        if not found:
            return None
        return Resolution(accounts=list(accounts.values()), remote=remote)

    async def _resolve_into(self, address: str, accounts: dict[int, Account], remote: list[str],
                            depth: int, seen: set[str]) -> bool:
        if address in seen or depth > ALIAS_DEPTH:
            return False
        seen.add(address)
        local, _, domain = address.rpartition("@")
        if domain not in self.domains:
            remote.append(address)
            return True
        acc = await self.get_account(address)
        if acc is not None:
            if not self.access(acc).may_receive:
                return False
            accounts[acc.id] = acc
            return True
        rows = await self.db.fetchall(
            "SELECT target FROM aliases WHERE local_part=? AND domain=?", (local, domain)
        )
        results = [await self._resolve_into(r["target"], accounts, remote, depth + 1, seen) for r in rows]
        return any(results)

    # ------------------------------------------------------------------ operator mailbox

    async def ensure_operator_unit(self, name: str, abbrev: str | None, *, actor: str) -> Created | None:
        """`init`: the operators' unit (Sở TT&TT, Đ5.1) and postmaster@/abuse@/support@ (Đ5.2) → its mailbox.

        Returns what was created (with the temporary password), or None when it existed.
        """
        local = unit_local_part(name, UnitKind.department, None, abbrev)
        created = None
        unit = await self.get_unit(local)
        if unit is None:
            created = await self.add_unit(name, UnitKind.department, abbrev=abbrev, actor=actor)
            unit = created.unit
        assert unit is not None
        for domain in self.domains:
            for role in ("postmaster", "abuse", "support"):
                exists = await self.db.fetchone(
                    "SELECT 1 FROM aliases WHERE local_part=? AND domain=?", (role, domain)
                )
                if not exists:
                    async with self.db.transaction():
                        await self.db.execute(
                            "INSERT INTO aliases (local_part, domain, target, created_at) VALUES (?,?,?,?)",
                            (role, domain, unit.address, ts(self.clock())),
                        )
                        await self._audit(actor, "alias.add", f"{role}@{domain}", after={"target": unit.address},
                                          rule="Đ5.2")
        return created

    async def postmaster_target(self) -> Account | None:
        """The mailbox postmaster@ of the primary domain delivers to (system notices are sent from it)."""
        res = await self.resolve(f"postmaster@{self.primary_domain}")
        return res.accounts[0] if res and res.accounts else None


class ImportFailed(Exception):
    def __init__(self, row: int, error: ValidationFailed | NotFound | Conflict) -> None:
        super().__init__(f"row {row}: {error}")
        self.row = row
        self.error = error


async def gather_limited(coros: Iterable[Any], limit: int) -> list[Any]:
    """Run coroutines with at most `limit` at a time; results (or exceptions) in order."""
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)
