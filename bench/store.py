"""Mail store speed: deliveries/s, building a 100,000-message index, opening a 100,000-message folder.

* deliveries/s: 10 KiB messages through `MailStore.deliver` (tmp/, fsync, rename, fsync dir,
  uidlist append + fsync, index commit), 20 concurrent tasks, into one mailbox and into 20
  mailboxes. Baseline, same session: the bare Maildir part alone (write tmp/, fsync, rename,
  fsync dir) on the same 20 concurrent tasks and thread pool, no index.
* index build: a 100,000-message folder (files put in place as a migration would) indexed from
  nothing (`reindex`): parse every file, MIME tree, header cache, text index.
* folder open: `snapshot()` of that folder (SELECT: UIDs, flags, MODSEQs) cold from the index
  (target under 100 ms) against the floor of fetching as many integer rows from an in-memory
  table in the same moment, and warm (the snapshot kept in memory); the first SELECT after a
  restart (a new store: the index opened, nothing kept in memory); `status()`; the first-sync
  `metadata()` of 10,000 messages.

Medians of --runs runs. The machine is shared: compare ratios, not absolute numbers.

    .venv/bin/python bench/store.py [--deliveries 2000] [--folder 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from policy.model import Policy
from storage import maildir as md
from storage.directory import Directory, PersonRequest
from storage.index import INDEX_NAME
from storage.snapshots import SNAPSHOTS
from storage.store import MailStore

PW = "Matkhau@123"


def message(i: int, size: int) -> bytes:
    head = (f"From: Người Gửi {i} <gui{i}@example.vn>\r\nTo: nguoinhan@phuyen.gov.vn\r\n"
            f"Subject: Báo cáo số {i}\r\nDate: Mon, 2 Nov 2026 08:00:00 +0700\r\n"
            f"Message-ID: <{i}.bench@example.vn>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    tail = b"\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Xin ch\xc3\xa0o</p>\r\n--b--\r\n"
    body = (f"Kính gửi đồng chí, đây là nội dung thư số {i}. " * (size // 40 + 1)).encode()
    return head + body[: max(0, size - len(head) - len(tail))] + tail


def fmt(runs: list[float], unit: str, digits: int = 1) -> str:
    return (f"{statistics.median(runs):10.{digits}f} {unit}   (runs: "
            + ", ".join(f"{r:.{digits}f}" for r in runs) + ")")


async def accounts(d: Directory, n: int) -> list:
    return [(await d.add_person(PersonRequest(name=f"Người Dùng {i}", unit=None, password=PW), actor="bench")).account
            for i in range(n)]


async def deliveries(store: MailStore, targets: list, count: int, concurrency: int) -> float:
    data = message(0, 10 * 1024)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await store.deliver(targets[i % len(targets)], data)

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - t)


async def bare_maildir(store: MailStore, root: Path, count: int, concurrency: int) -> float:
    """Baseline: only the durable Maildir steps, on the store's own thread pool."""
    data = message(0, 10 * 1024)
    md.make_maildir(root, subfolder=False)
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    def put(i: int) -> None:
        base = md.unique_base(len(data))
        md.write_file(root / "tmp" / base, data)
        os.rename(root / "tmp" / base, root / "new" / base)
        md.fsync_dir(root / "new")

    async def one(i: int) -> None:
        async with sem:
            await loop.run_in_executor(store.pool.executor, put, i)

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - t)


def raw_fetch(n: int) -> float:
    """The floor for a cold open on this machine right now: Python fetching n rows of 4 integers."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d)")
    conn.executemany("INSERT INTO t VALUES (?,?,?,?)", ((i, 1, 0, 1_795_000_000_000_000 + i) for i in range(n)))
    t = time.perf_counter()
    conn.execute("SELECT a, b, c, d FROM t ORDER BY a").fetchall()
    elapsed = (time.perf_counter() - t) * 1000
    conn.close()
    return elapsed


def fill_folder(root: Path, n: int) -> int:
    """n message files in cur/ (as a migration would leave them); returns total bytes."""
    md.make_maildir(root, subfolder=False)
    total = 0
    for i in range(n):
        data = message(i, 2000 + (i * 37) % 6000)
        base = f"{1_700_000_000 + i}.M{i}P1.bench,S={len(data)},W={len(data)}"
        with open(root / "cur" / f"{base}:2,{'S' if i % 3 else ''}", "wb") as fh:
            fh.write(data)
        total += len(data)
    return total


async def run(n_deliveries: int, folder_size: int, runs: int, tmp: Path) -> None:
    policy = Policy()
    d = await Directory.open(tmp / "directory.sqlite3", policy, ["phuyen.gov.vn"])
    store = MailStore(tmp / "mail", policy, d)
    targets = await accounts(d, 21)
    for a in targets:
        await store.create_mailbox(a)
    one_box, many, base = [], [], []
    for r in range(runs):
        base.append(await bare_maildir(store, tmp / f"bare{r}", n_deliveries, 20))
        one_box.append(await deliveries(store, targets[:1], n_deliveries, 20))
        many.append(await deliveries(store, targets[1:], n_deliveries, 20))
    print(f"deliveries/s, 10 KiB, fsync, 20 concurrent tasks, {n_deliveries} per run, median of {runs}")
    print("  bare Maildir (baseline)  " + fmt(base, "msg/s"))
    print("  store, one mailbox       " + fmt(one_box, "msg/s") +
          f"   = {statistics.median(one_box) / statistics.median(base):.2f} x baseline")
    print("  store, 20 mailboxes      " + fmt(many, "msg/s") +
          f"   = {statistics.median(many) / statistics.median(base):.2f} x baseline")

    big = targets[0]
    root = store.mailbox_path(big)
    await store.close()
    shutil.rmtree(root)
    t = time.perf_counter()
    total = fill_folder(root, folder_size)
    print(f"\n{folder_size} messages ({total / 2**20:.0f} MiB) written in {time.perf_counter() - t:.1f} s")
    builds: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    floor: list[float] = []
    statuses: list[float] = []
    restarts: list[float] = []
    metas: list[float] = []
    index_file = str(root / INDEX_NAME)
    for _ in range(max(1, min(runs, 3))):
        for suffix in ("", "-wal", "-shm"):
            (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
        store = MailStore(tmp / "mail", policy, d)
        t = time.perf_counter()
        usage = await store.usage(big)  # opens the missing index: rebuilt from the files
        builds.append(time.perf_counter() - t)
        assert usage.messages == folder_size, usage
        s = await store.session(big)
        for _ in range(5):
            SNAPSHOTS.forget(index_file)  # cold: from the index
            t = time.perf_counter()
            snap = await s.snapshot("INBOX")
            cold.append((time.perf_counter() - t) * 1000)
            assert len(snap.messages) == folder_size
            t = time.perf_counter()
            await s.snapshot("INBOX")  # warm: the kept snapshot, checked against the folder row
            warm.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await s.status("INBOX")
            statuses.append((time.perf_counter() - t) * 1000)
            floor.append(raw_fetch(folder_size))
        uids = [m[0] for m in snap.messages[-10_000:]]
        t = time.perf_counter()
        metadata = await s.metadata("INBOX", uids)
        metas.append((time.perf_counter() - t) * 1000)
        assert len(metadata) == len(uids)
        await store.close()
        for _ in range(3):  # a restarted worker: open the index, then SELECT, nothing in memory
            SNAPSHOTS.forget(index_file)
            store = MailStore(tmp / "mail", policy, d)
            t = time.perf_counter()
            snap = await (await store.session(big)).snapshot("INBOX")
            restarts.append((time.perf_counter() - t) * 1000)
            assert len(snap.messages) == folder_size
            await store.close()
    print(f"index build, {folder_size}-message folder      " + fmt(builds, "s", 2) +
          f"   = {folder_size / statistics.median(builds):.0f} msg/s")
    print("open (snapshot) from the index, cold        " + fmt(cold, "ms", 1) + "   (target < 100 ms)")
    print(f"  baseline: fetch {folder_size} 4-int rows from an in-memory table " + fmt(floor, "ms", 1) +
          f"   -> cold open = {statistics.median(cold) / statistics.median(floor):.2f} x baseline")
    print("open (snapshot), kept in memory             " + fmt(warm, "ms", 2))
    print("first open after a restart (index opened)   " + fmt(restarts, "ms", 1))
    print(f"status, {folder_size}-message folder           " + fmt(statuses, "ms", 1))
    print("first-sync metadata of 10,000 messages    " + fmt(metas, "ms", 1))
    await d.close()
    d.hasher.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--folder", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        asyncio.run(run(a.deliveries, a.folder, a.runs, Path(tmp)))
