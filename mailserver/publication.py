"""Đ12.5: the directory of a unit and its sub-units, for the unit's website.

Only mailboxes in use are published (revoked addresses are left out); the
HTML page is self-contained, UTF-8, and readable on a phone.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass

from policy.lockstate import LockState
from storage.directory import Directory
from storage.records import Account, Unit


@dataclass(frozen=True)
class Entry:
    unit: Unit
    account: Account


async def unit_directory(directory: Directory, unit_local: str) -> tuple[Unit, list[Entry]]:
    tree = await directory.unit_tree(unit_local)
    entries: list[Entry] = []
    for unit in tree:
        for acc in await directory.list_accounts(unit.local_part):
            if directory.access(acc).state != LockState.revoked:
                entries.append(Entry(unit, acc))
    return tree[0], entries


def to_csv(entries: list[Entry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["unit", "unit_address", "name", "address", "kind"])
    for e in entries:
        w.writerow([e.unit.name, e.unit.address, e.account.display_name, e.account.address, e.account.kind])
    return buf.getvalue()


def to_html(root: Unit, entries: list[Entry]) -> str:
    esc = html.escape
    sections = []
    current: Unit | None = None
    rows: list[str] = []

    def flush() -> None:
        if current is not None:
            sections.append(
                f"<section><h2>{esc(current.name)}</h2><table><thead><tr><th>Họ và tên / Name</th>"
                f"<th>Địa chỉ thư / Address</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
            )

    for e in entries:
        if current is None or e.unit.id != current.id:
            flush()
            current, rows = e.unit, []
        addr = esc(e.account.address)
        rows.append(f'<tr><td>{esc(e.account.display_name)}</td><td><a href="mailto:{addr}">{addr}</a></td></tr>')
    flush()
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Danh bạ thư điện tử – {esc(root.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem}}
table{{border-collapse:collapse;width:100%}}
th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;word-break:break-all}}
h2{{margin-top:1.5rem}}</style>
</head><body><h1>Danh bạ thư điện tử công vụ – {esc(root.name)}</h1>
{''.join(sections)}
</body></html>
"""
