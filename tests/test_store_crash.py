"""Crash safety (Đ10.2: mail is stored completely, with integrity): SIGKILL during thousands of
concurrent deliveries loses nothing that was confirmed and leaves no partial message behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys

from mailserver.app import App
from policy.loader import load
from storage import maildir as md
from tests.helpers import ROOT, cli
from tests.mailhelpers import PW
from tests.store_worker import crash_message

ADDRESSES = ["nguyenvana", "tranthib", "levanc"]
NAMES = ["Nguyễn Văn A", "Trần Thị B", "Lê Văn C"]


def run_worker_and_kill(config, total: int, concurrency: int, kill_after: int) -> list[str]:
    env = {**os.environ}
    env.pop("MAILSERVER_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store_worker", str(config), str(total), str(concurrency), *ADDRESSES],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    lines: list[str] = []
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        while len(lines) < kill_after:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"worker ended early:\n{proc.stderr.read()}")
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        lines.extend(proc.stdout.read().splitlines(keepends=True))  # confirmed before it died
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [ln for ln in lines if ln.endswith("\n")]  # a line cut by the kill was never a promise


def test_sigkill_during_concurrent_deliveries_loses_nothing_confirmed(initialised):
    config = initialised
    for name in NAMES:
        cli(config, "account", "add", "--name", name, "--password", PW, check=True)
    total = 6000
    lines = run_worker_and_kill(config, total, concurrency=300, kill_after=1500)
    confirmed = [ln.split() for ln in lines]
    assert len(confirmed) >= 1500

    async def check() -> None:
        app = await App.open(loaded=load(config))  # "restart"
        try:
            by_account = {a: await app.directory.require_account(a) for a in ADDRESSES}
            # 1. every confirmed delivery is there, complete, under the UID it was given
            for address, folder, uid, _uidvalidity, i, digest in confirmed:
                acc = by_account[address.split("@")[0]]
                s = await app.store.session(acc)
                data = await s.read(folder, int(uid))
                assert hashlib.sha256(data).hexdigest() == digest, (address, folder, uid)
                assert data == crash_message(int(i))
            for acc in by_account.values():
                s = await app.store.session(acc)
                for folder in ("INBOX", "Sent"):
                    snap = await s.snapshot(folder)
                    mine = [c for c in confirmed if c[0] == acc.address and c[1] == folder]
                    assert all(c[3] == str(snap.uidvalidity) for c in mine)
                    indexed = {m[0] for m in snap.messages}
                    assert {int(c[2]) for c in mine} <= indexed
                    # 2. the index agrees with the files: one row per message file, nothing partial
                    d = app.store.mailbox_path(acc) / md.folder_dirname(folder) if folder != "INBOX" \
                        else app.store.mailbox_path(acc)
                    names = os.listdir(d / "new") + os.listdir(d / "cur")
                    assert len(names) == len(indexed), (acc.address, folder)
                    for meta in await s.metadata(folder, sorted(indexed)):
                        data = await s.read(folder, meta.uid)
                        number = int(re.search(rb"X-Test-Number: (\d+)", data).group(1))
                        assert data == crash_message(number), (folder, meta.uid)  # complete, never partial
                        assert meta.size == len(data)
                        assert ("\\Seen" in meta.flags) == (folder == "Sent")
                    # 3. every UID is in dovecot-uidlist, so even losing the index keeps them
                    uidlist = (d / "dovecot-uidlist").read_text()
                    assert all(f"\n{uid} :" in uidlist for uid in indexed)
                # 4. usage is exact
                drift = await app.store.recalc(acc)
                assert (drift.drift_bytes, drift.drift_messages) == (0, 0), drift
                # 5. the mailbox keeps working: UIDs continue above everything given out
                st = await app.store.deliver(acc, crash_message(total + 1))
                assert st.uid > max([int(c[2]) for c in confirmed if c[0] == acc.address and c[1] == "INBOX"],
                                    default=0)
        finally:
            await app.close()

    asyncio.run(check())
