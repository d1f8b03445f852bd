"""The reports the province files: Đ12.9 (6-monthly list of mailboxes in use), Đ14.1.c and Đ14.3.đ
(every 3, 6 and 12 months: per unit, mailboxes in use, locked, revoked, inactive, storage, traffic).

Figures come from three places, each the truth for its part:

* the directory: accounts and units, states (policy.lockstate at the
  report's end), creation, leave and revocation dates;
* the audit log: suspensions for inactivity (the jobs record them with rule
  Đ6.2.a);
* the daily counters (storage/counters.py), aggregated from the mail log
  before Đ7.2 purges it: messages sent and received, refusals by reason,
  viruses, spam; and mailbox sizes (live usage when the period ends today,
  else the last daily snapshot before its end).

A unit's row counts its own mailboxes (the unit mailbox and its people);
sub-units have rows of their own, indented under it, and the total covers
the whole tree. Traffic not attributable to any mailbox (mail refused for
unknown addresses) appears only in the province-wide total.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from policy.calendar import local_date, start_of_day
from policy.deadlines import Period
from policy.lockstate import LockState
from policy.units import format_size
from storage.counters import CounterStore
from storage.directory import Directory
from storage.records import Account, Unit
from storage.store import MailStore

TOP_SENDERS = 10
STATES = [s.value for s in LockState]
TRAFFIC = ("sent", "received", "refused", "virus", "spam")


@dataclass
class UnitRow:
    unit: str  # address local part, "" for accounts without a unit, "*" for the total
    name: str
    depth: int
    active: int = 0
    send_locked: int = 0
    suspended: int = 0
    revoked: int = 0
    created: int = 0
    retired: int = 0
    revoked_in_period: int = 0
    suspended_inactive: int = 0
    storage_bytes: int = 0
    quota_bytes: int = 0
    sent: int = 0
    received: int = 0
    refused: int = 0
    virus: int = 0
    spam: int = 0

    @property
    def in_use(self) -> int:
        return self.active + self.send_locked + self.suspended

    def add(self, other: UnitRow) -> None:
        for k, v in asdict(other).items():
            if isinstance(v, int) and k != "depth":
                setattr(self, k, getattr(self, k) + v)

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "in_use": self.in_use}


@dataclass
class UsageReport:
    period: Period
    scope: str | None  # the --unit, or None: the whole province
    generated_at: datetime
    rows: list[UnitRow]
    total: UnitRow
    top_senders: list[dict[str, Any]] = field(default_factory=list)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    storage_as_of: str = ""

    def public(self) -> dict[str, Any]:
        return {
            "period": {"months": self.period.months, "first": self.period.first.isoformat(),
                       "last": self.period.last.isoformat()},
            "unit": self.scope, "generated_at": self.generated_at.isoformat(), "storage_as_of": self.storage_as_of,
            "units": [r.public() for r in self.rows], "total": self.total.public(),
            "top_senders": self.top_senders, "refused_by_reason": self.refused_by_reason,
        }


def _state_key(state: LockState) -> str:
    return state.value.replace("-", "_")


class Reports:
    def __init__(self, directory: Directory, store: MailStore, now: datetime) -> None:
        self.directory = directory
        self.store = store
        self.now = now
        self.tz = directory.policy.tz

    async def _scope(self, unit: str | None) -> tuple[list[tuple[Unit, int]], bool]:
        """The units in the report with their depth, parents first; and whether unit-less accounts count."""
        if unit is not None:
            tree = await self.directory.unit_tree(unit)
            depth = {tree[0].id: 0}
            for u in tree[1:]:
                depth[u.id] = depth.get(u.parent_id or -1, 0) + 1
            return [(u, depth[u.id]) for u in tree], False
        units = await self.directory.list_units()
        children: dict[int | None, list[Unit]] = defaultdict(list)
        for u in units:
            children[u.parent_id].append(u)
        out: list[tuple[Unit, int]] = []

        def walk(parent: int | None, d: int) -> None:
            for u in sorted(children.get(parent, []), key=lambda x: x.local_part):
                out.append((u, d))
                walk(u.id, d + 1)

        walk(None, 0)
        return out, True

    def _revoked_day(self, acc: Account) -> date | None:
        if acc.revoked_at is not None:
            return local_date(acc.revoked_at, self.tz)
        return self.directory.access(acc, self.now).revoke_on if acc.retired_on else None

    async def usage(self, period: Period, unit: str | None = None) -> UsageReport:
        scope, unitless = await self._scope(unit)
        end_at = min(self.now, start_of_day(period.end, self.tz))
        today = local_date(self.now, self.tz)
        rows: dict[int, UnitRow] = {u.id: UnitRow(u.local_part, u.name, d) for u, d in scope}
        if unitless:
            rows[0] = UnitRow("", "(không thuộc đơn vị / no unit)", 0)
        accounts = [a for a in await self.directory.list_accounts(include_released=True)
                    if (a.unit_id or 0) in rows]
        by_id = {a.id: a for a in accounts}
        live = period.end >= today  # a period up to today: the sizes now, not the last snapshot
        gauges = {} if live else await CounterStore(self.directory.db).latest_gauges(period.end)
        for acc in accounts:
            row = rows[acc.unit_id or 0]
            if local_date(acc.created_at, self.tz) >= period.end:
                continue  # did not exist yet
            state = self.directory.access(acc, end_at).state
            setattr(row, _state_key(state), getattr(row, _state_key(state)) + 1)
            row.created += local_date(acc.created_at, self.tz) in period
            row.retired += acc.retired_on is not None and acc.retired_on in period
            revoked = self._revoked_day(acc)
            row.revoked_in_period += revoked is not None and revoked in period
            if state != LockState.revoked:
                row.quota_bytes += await self.directory.quota_of(acc)
                if live and self.store.has_mailbox(acc):
                    row.storage_bytes += (await self.store.usage(acc)).bytes
                elif not live:
                    row.storage_bytes += gauges.get(acc.id, {}).get("storage_bytes", (period.first, 0))[1]
        since, until = start_of_day(period.first, self.tz), start_of_day(period.end, self.tz)
        addresses: dict[str, list[Account]] = defaultdict(list)
        for acc in accounts:
            addresses[acc.address].append(acc)
        for target, at in await self.directory.audit_targets("account.suspend", "Đ6.2.a", since, until):
            holders = [a for a in addresses.get(target or "", []) if a.created_at <= at]
            if holders:
                rows[holders[-1].unit_id or 0].suspended_inactive += 1
        senders: Counter[int] = Counter()
        reasons: Counter[str] = Counter()
        total = UnitRow("*", "Tổng cộng / Total", 0)
        for c in await CounterStore(self.directory.db).totals(period.first, period.end):
            in_scope = c.account_id in by_id or (c.account_id == 0 and unitless)
            if not in_scope:
                continue
            if c.metric == "refused":
                reasons[c.reason] += c.value
            if c.metric in TRAFFIC:
                target = rows.get(by_id[c.account_id].unit_id or 0) if c.account_id in by_id else total
                if target is not None:
                    setattr(target, c.metric, getattr(target, c.metric) + c.value)
            if c.metric == "sent" and c.account_id in by_id:
                senders[c.account_id] += c.value
        for row in rows.values():
            total.add(row)
        listed = [rows[u.id] for u, _ in scope] + ([rows[0]] if unitless and _nonzero(rows[0]) else [])
        top = []
        units = {u.id: u for u, _ in scope}
        ranked = sorted(senders.items(), key=lambda kv: (-kv[1], by_id[kv[0]].address))  # ties: by address
        for account_id, sent in ranked[:TOP_SENDERS]:
            acc = by_id[account_id]
            u = units.get(acc.unit_id or -1)
            top.append({"address": acc.address, "name": acc.display_name, "unit": u.local_part if u else None,
                        "sent": sent})
        return UsageReport(
            period=period, scope=unit, generated_at=self.now, rows=listed, total=total, top_senders=top,
            refused_by_reason=dict(reasons.most_common()),
            storage_as_of="now" if live else (period.end - timedelta(days=1)).isoformat(),
        )

    async def mailboxes(self, unit: str) -> tuple[Unit, list[dict[str, Any]]]:
        """Đ12.9: every mailbox in use (not revoked) in the unit and its sub-units."""
        tree = await self.directory.unit_tree(unit)
        out = []
        for u in tree:
            for acc in await self.directory.list_accounts(u.local_part):
                access = self.directory.access(acc, self.now)
                if access.state == LockState.revoked:
                    continue
                moments = [m for m in (acc.last_login_at, acc.last_send_at, acc.last_receive_at) if m]
                out.append({
                    "unit": u.local_part, "unit_name": u.name, "address": acc.address, "name": acc.display_name,
                    "kind": acc.kind, "role": acc.role.value if acc.is_person else "", "state": access.state.value,
                    "created": local_date(acc.created_at, self.tz).isoformat(),
                    "last_activity": local_date(max(moments), self.tz).isoformat() if moments else None,
                    "leave_date": acc.retired_on.isoformat() if acc.retired_on else None,
                })
        return tree[0], out


def _nonzero(row: UnitRow) -> bool:
    return any(v for k, v in asdict(row).items() if isinstance(v, int) and k != "depth")


# ---------------------------------------------------------------- rendering

USAGE_COLUMNS = [
    ("unit", "đơn vị / unit"), ("name", "tên / name"), ("in_use", "đang dùng / in use"),
    ("active", "hoạt động / active"), ("send_locked", "khóa gửi / send-locked"),
    ("suspended", "tạm khóa / suspended"), ("revoked", "đã thu hồi / revoked"), ("created", "cấp mới / created"),
    ("retired", "nghỉ / retired"), ("revoked_in_period", "thu hồi trong kỳ / revoked in period"),
    ("suspended_inactive", "khóa do không dùng / suspended inactive"), ("storage_bytes", "dung lượng / storage"),
    ("quota_bytes", "hạn mức / quota"), ("sent", "gửi / sent"), ("received", "nhận / received"),
    ("refused", "từ chối / refused"), ("virus", "virus"), ("spam", "thư rác / spam"),
]
SHORT = {"in_use": "in use", "send_locked": "locked", "suspended": "susp.", "revoked_in_period": "revoked+",
         "suspended_inactive": "inactive", "storage_bytes": "storage", "quota_bytes": "quota"}
MAILBOX_COLUMNS = ["unit", "address", "name", "kind", "role", "state", "created", "last_activity", "leave_date"]


def _cell(key: str, value: Any, human: bool) -> str:
    if human and key in ("storage_bytes", "quota_bytes"):
        return format_size(int(value))
    return "" if value is None else str(value)


def usage_rows(report: UsageReport, human: bool) -> list[list[str]]:
    out = []
    for row in [*report.rows, report.total]:
        d = row.public()
        cells = [_cell(k, d[k], human) for k, _ in USAGE_COLUMNS]
        if human:
            cells[0] = "  " * row.depth + cells[0]
        out.append(cells)
    return out


def usage_title(report: UsageReport) -> str:
    p = report.period
    scope = f"đơn vị {report.scope}" if report.scope else "toàn tỉnh"
    return (f"Báo cáo sử dụng thư điện tử công vụ ({scope}), {p.months} tháng từ {p.first:%d/%m/%Y} "
            f"đến {p.last:%d/%m/%Y} / Mail service usage ({report.scope or 'province'}), {p.months} months "
            f"{p.first} to {p.last}")


def usage_csv(report: UsageReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([k for k, _ in USAGE_COLUMNS])
    w.writerows(usage_rows(report, False))
    return buf.getvalue()


def usage_json(report: UsageReport) -> str:
    return json.dumps(report.public(), ensure_ascii=False, indent=2, default=str) + "\n"


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}}
table{{border-collapse:collapse;margin-bottom:1.5rem}}
th,td{{text-align:right;padding:.25rem .5rem;border-bottom:1px solid #ddd}}
th:nth-child(-n+2),td:nth-child(-n+2){{text-align:left}}
tr.total td{{font-weight:bold;border-top:2px solid #333}}</style>
</head><body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def _html_table(headers: list[str], rows: list[list[str]], last_total: bool = False) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="total"' if last_total and i == len(rows) - 1 else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def usage_html(report: UsageReport) -> str:
    rows = usage_rows(report, True)
    for r, row in zip(rows, [*report.rows, report.total], strict=True):
        r[0] = "\u00a0\u00a0" * row.depth + r[0].strip()
    body = _html_table([label for _, label in USAGE_COLUMNS], rows, last_total=True)
    body += f"<p>Dung lượng tính đến / storage as of: {html.escape(report.storage_as_of)}</p>"
    if report.top_senders:
        body += "<h2>Gửi nhiều nhất / Top senders</h2>" + _html_table(
            ["địa chỉ / address", "họ tên / name", "đơn vị / unit", "gửi / sent"],
            [[t["address"], t["name"], t["unit"] or "", str(t["sent"])] for t in report.top_senders])
    if report.refused_by_reason:
        body += "<h2>Từ chối theo lý do / Refused by reason</h2>" + _html_table(
            ["lý do / reason", "số thư / messages"], [[k, str(v)] for k, v in report.refused_by_reason.items()])
    return _page(usage_title(report), body)


def mailboxes_render(root: Unit, entries: list[dict[str, Any]], fmt: str, now: datetime) -> str:
    """csv, json or html (the CLI prints the table itself)."""
    rows = mailboxes_rows(entries)
    if fmt == "json":
        return json.dumps({"unit": root.local_part, "unit_name": root.name, "as_of": now.isoformat(),
                           "mailboxes": entries}, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(MAILBOX_COLUMNS)
        w.writerows(rows)
        return buf.getvalue()
    return _page(mailboxes_title(root, now),
                 _html_table(MAILBOX_COLUMNS, rows) + f"<p>{len(entries)} hộp thư / mailboxes</p>")


def mailboxes_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    return [[_cell(k, e[k], True) for k in MAILBOX_COLUMNS] for e in entries]


def mailboxes_title(root: Unit, now: datetime) -> str:
    return f"Danh sách hộp thư đang sử dụng – {root.name} ({now:%d/%m/%Y}) / Mailboxes in use (Đ12.9)"
