"""Filling the old Dovecot with a unit's mail and comparing folders after a migration (Đ8.2.d, Đ10.2)."""

from __future__ import annotations

import imaplib
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage import mutf7
from tests.helpers import ROOT
from tests.imap_support import message

# source folder ("." is Dovecot's separator here) -> (messages, the folder it must become here)
FOLDERS: dict[str, tuple[int, str]] = {
    "INBOX": (90, "INBOX"),
    "Sent Items": (30, "Sent"),  # by name (not marked)
    "Deleted Items": (15, "Trash"),  # by SPECIAL-USE \Trash
    "Drafts": (5, "Drafts"),  # by SPECIAL-USE \Drafts
    "Thư rác": (10, "Junk"),  # by its Vietnamese name
    "Dự án": (20, "Dự án"),
    "Dự án.2026": (25, "Dự án/2026"),
    "Dự án.2026.Quý 1": (20, "Dự án/2026/Quý 1"),
    "Công văn đến": (40, "Công văn đến"),
    "Sent Items.2019": (10, "Sent/2019"),
}
FLAG_CYCLE = ["", "\\Seen", "\\Seen \\Answered", "\\Flagged \\Seen", "\\Seen $Forwarded", "$Label1 Quan_trong",
              "\\Draft", "\\Seen \\Deleted"]


def quote(name: str) -> str:
    """A folder name for imaplib: modified UTF-7, quoted (imaplib quotes nothing itself)."""
    return '"' + mutf7.encode(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fill(conn: imaplib.IMAP4, folders: dict[str, tuple[int, str]] = FOLDERS, *, tag: str = "m",
         start: int = 0) -> int:
    """APPEND messages with flags and internal dates spread over ten years; some with attachments,
    one pair of identical messages (a true duplicate must stay two)."""
    n = start
    base = datetime(2015, 3, 1, 8, 0, tzinfo=UTC)
    for name, (count, _) in folders.items():
        if name != "INBOX":
            conn.create(quote(name))
        for i in range(count):
            n += 1
            when = base + timedelta(days=11 * n, minutes=n)
            attach = os.urandom(3000 + 7 * n) if n % 9 == 0 else None
            body = f"Kính gửi các đơn vị.\r\nNội dung số {n} của {name}.\r\n" + ("Dòng văn bản. " * (n % 40))
            msg = message(f"Công văn {tag}{n}: {name}", body, date=when.strftime("%a, %d %b %Y %H:%M:%S +0700"),
                          attachment=attach)
            flags = FLAG_CYCLE[n % len(FLAG_CYCLE)]
            typ, _ = conn.append(quote(name), f"({flags})" if flags else None, imaplib.Time2Internaldate(when), msg)
            assert typ == "OK"
            if name == "INBOX" and i == 0:  # the same bytes again, same flags and date
                assert conn.append(quote(name), f"({flags})" if flags else None,
                                   imaplib.Time2Internaldate(when), msg)[0] == "OK"
                n += 1
    return n


def snapshot(conn: imaplib.IMAP4, folder: str) -> Counter[tuple[bytes, frozenset[str], float]]:
    """Every message of a folder as (bytes, flags without \\Recent, internal date as a timestamp)."""
    typ, data = conn.select(quote(folder), readonly=True)
    assert typ == "OK", (folder, data)
    out: Counter[tuple[bytes, frozenset[str], float]] = Counter()
    if int(data[0]) == 0:
        return out
    typ, data = conn.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        flags = frozenset(f.decode() for f in imaplib.ParseFlags(head)) - {"\\Recent"}
        when = imaplib.Internaldate2tuple(head)
        assert when is not None, head
        out[(body, flags, datetime(*when[:6]).timestamp())] += 1
    return out


def run_cli(config: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`mailserver --config CONFIG ARGS` with a timeout for a loaded shared machine."""
    env = {**os.environ, "MAILSERVER_ACTOR": "test-operator"}
    env.pop("MAILSERVER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "mailserver", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def run_json(config: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    proc = run_cli(config, *args, "--json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


async def store_snapshot(app: Any, address: str, folder: str) -> Counter[tuple[bytes, frozenset[str], float]]:
    """The same view as `snapshot`, read through the store's public API (in-process tests)."""
    account = await app.directory.get_account(address)
    session = await app.store.session(account)
    out: Counter[tuple[bytes, frozenset[str], float]] = Counter()
    uids = await session.uids(folder)
    for meta in await session.metadata(folder, uids):
        body = await session.read(folder, meta.uid)
        out[(body, frozenset(meta.flags) - {"\\Recent"}, float(int(meta.internal_date.timestamp())))] += 1
    return out

